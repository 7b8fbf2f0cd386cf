"""The job store's publish claims and callback outbox, the same specification for both stores
(tests/support/stores.py): who publishes a request the broker never confirmed, what the
housekeeping settles, and deliveries claimed once under a lease on the store's own clock."""

from __future__ import annotations

from protocol import JobStatus, now_ms
from tests.support.stores import StoreFactory
from tests.support.stores import new_job as _job


async def test_two_stores_on_one_file_share_jobs_and_never_claim_one_delivery_twice(
    stores: StoreFactory
) -> None:
    one = await stores()
    two = await stores()
    for i in range(20):
        await one.create(_job(f"j{i}", callback_url="https://example.com/hook"))
        await one.finish(f"j{i}", JobStatus.SUCCEEDED, i, None, 2_000)
    seen = await two.get("j7")
    assert seen is not None and seen.callback is not None and seen.callback.state == "pending"
    claimed_one = await one.claim_deliveries(3_000, 12, lease_ms=60_000)
    claimed_two = await two.claim_deliveries(3_000, 12, lease_ms=60_000)
    ids_one = {d.id for d in claimed_one}
    ids_two = {d.id for d in claimed_two}
    assert len(ids_one) == 12 and len(ids_two) == 8 and not ids_one & ids_two
    # A lease that ran out (its process died) lets another process resume the delivery.
    resumed = await two.claim_deliveries(3_000 + 60_001, 100, lease_ms=60_000)
    assert {d.id for d in resumed} == ids_one | ids_two
    assert await one.delivery_outcome(resumed[0], delivered=True, error=None, retry_at_ms=None)
    job = await two.get(resumed[0].job_id)
    assert job is not None and job.callback is not None
    assert job.callback.state == "delivered" and job.callback.attempts == 1
    await one.close()
    await two.close()


async def test_a_delivery_whose_lease_ran_out_cannot_overwrite_the_next_claims_outcome(
    stores: StoreFactory
) -> None:
    """A claim is fenced: its outcome is written only while its lease is the row's (issue 22,
    #6: a late failure overwrote `delivered`, sent by the process that claimed it next)."""
    one = await stores()
    two = await stores()
    await one.create(_job("j", callback_url="https://example.com/hook"))
    await one.finish("j", JobStatus.SUCCEEDED, 1, None, 2_000)
    [late] = await one.claim_deliveries(3_000, 10, lease_ms=1_000)
    [current] = await two.claim_deliveries(4_001, 10, lease_ms=60_000)  # the lease ran out
    assert current.id == late.id and current.lease != late.lease
    assert await two.delivery_outcome(current, delivered=True, error=None, retry_at_ms=None)
    assert not await one.delivery_outcome(late, delivered=False, error="timed out",
                                          retry_at_ms=None)
    job = await two.get("j")
    assert job is not None and job.callback is not None
    assert job.callback.state == "delivered" and job.callback.attempts == 1
    await one.close()
    await two.close()


async def test_leases_are_taken_on_the_stores_own_clock(stores: StoreFactory) -> None:
    """Gateways on several hosts claim by the database's clock, not their own (a host whose
    clock runs ahead would take deliveries whose lease has not ended)."""
    store = await stores()
    await store.create(_job("j", callback_url="https://example.com/hook"))
    await store.finish("j", JobStatus.SUCCEEDED, 1, None, 2_000)
    [claimed] = await store.claim_deliveries(None, 10, lease_ms=60_000)
    assert claimed.lease > now_ms() + 50_000  # now (the store's clock) + the lease
    assert await store.claim_deliveries(None, 10, lease_ms=60_000) == []  # leased
    await store.close()


async def test_a_request_never_confirmed_is_claimed_by_one_resubmission_after_its_lease(
    stores: StoreFactory
) -> None:
    store = await stores()
    await store.create(_job("a", publish_lease_ms=5_000))  # its submitter owns it until 5 s
    assert await store.claim_publish("a", 4_000, lease_ms=1_000) == "held"
    assert await store.claim_publish("a", 6_000, lease_ms=1_000) == "claimed"
    assert await store.claim_publish("a", 6_500, lease_ms=1_000) == "held"  # one at a time
    await store.release_publish("a")  # that publish failed: the next may try at once
    assert await store.claim_publish("a", 6_600, lease_ms=1_000) == "claimed"
    await store.mark_published("a")
    assert await store.claim_publish("a", 9_000, lease_ms=1_000) == "done"
    assert await store.claim_publish("missing", 9_000, lease_ms=1_000) == "done"
    await store.close()


async def test_unpublished_jobs_nobody_resubmitted_are_failed_the_rest_left_alone(
    stores: StoreFactory
) -> None:
    store = await stores()
    for job_id, lease in (("orphan", 5_000), ("published", 5_000), ("recent", 50_000)):
        await store.create(_job(job_id, publish_lease_ms=lease))
    await store.mark_published("published")
    abandoned = await store.abandon_unpublished(leased_before_ms=10_000, at_ms=11_000)
    assert [job_id for job_id, _ in abandoned] == ["orphan"]
    # Cancelled too: if the broker took its request after all, consumers skip it.
    assert [job_id for job_id, _ in await store.pending_cancels(0)] == ["orphan"]
    jobs = {job_id: await store.get(job_id) for job_id in ("orphan", "published", "recent")}
    statuses = {job_id: job.status for job_id, job in jobs.items() if job is not None}
    orphan = jobs["orphan"]
    assert statuses == {"orphan": JobStatus.FAILED, "published": JobStatus.QUEUED,
                        "recent": JobStatus.QUEUED}
    assert orphan is not None and orphan.error is not None
    assert orphan.error.code == "overloaded" and "never confirmed" in orphan.error.message
    await store.close()


async def test_a_job_abandoned_by_housekeeping_still_gets_its_callback(
    stores: StoreFactory
) -> None:
    """Issue 22: a job failed by housekeeping (its publish never confirmed) had no outbox row,
    so its caller never heard of it."""
    store = await stores()
    await store.create(_job("orphan", publish_lease_ms=5_000,
                            callback_url="https://hooks.example.com/done"))
    await store.create(_job("quiet", publish_lease_ms=5_000))
    await store.abandon_unpublished(leased_before_ms=10_000, at_ms=11_000)
    due = await store.claim_deliveries(now_ms=12_000, limit=10, lease_ms=60_000)
    assert [(d.job_id, d.url, d.finished_ms) for d in due] == [
        ("orphan", "https://hooks.example.com/done", 11_000)]
    await store.close()


