"""The job store as a unit, the same specification for both stores: a real SQLite file and a
real PostgreSQL database (a private server), two stores on one as two gateway processes."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from gateway.store import IdempotencyConflict, JobStore, NewJob, SqliteJobStore
from gateway.store.postgres import PostgresJobStore
from protocol import ErrorBody, JobStatus, now_ms

StoreFactory = Callable[[], Awaitable[JobStore]]


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Opens a store on one shared file or database (each call: another gateway process)."""
    if request.param == "sqlite":
        async def sqlite() -> JobStore:
            return SqliteJobStore(tmp_path / "jobs.sqlite3")

        return sqlite
    dsn = request.getfixturevalue("pg_dsn")

    async def postgresql() -> JobStore:
        return await PostgresJobStore.open(dsn)

    return postgresql


def _job(job_id: str, **extra: object) -> NewJob:
    return NewJob(id=job_id, method="echo", created_ms=1_000, **extra)  # type: ignore[arg-type]


async def test_states_only_move_forward_and_a_terminal_state_is_final(stores: StoreFactory) -> None:
    store = await stores()
    await store.create(_job("a"))
    assert await store.started("a", "w:p:0", 1, 2_000)
    # the outcome that ends a job answers with its method (the jobs counter's label)
    assert await store.finish("a", JobStatus.SUCCEEDED, {"ok": 1}, None, 3_000) == "echo"
    assert not await store.started("a", "w:p:1", 2, 4_000)  # a late start changes nothing
    assert await store.finish("a", JobStatus.FAILED, None,  # a redelivered reply neither
                              ErrorBody(code="worker_error", message="x"), 5_000) is None
    assert await store.finish("nobody", JobStatus.SUCCEEDED, 1, None, 5_000) is None
    job = await store.get("a")
    assert job is not None and job.status is JobStatus.SUCCEEDED and job.result == {"ok": 1}
    assert job.attempts == 1 and job.worker == "w:p:0"
    assert job.finished_at == "1970-01-01T00:00:03.000Z"
    await store.close()


async def test_a_new_job_is_answered_as_it_reads_back_and_logged_queued(
    stores: StoreFactory
) -> None:
    store = await stores()
    created, is_new = await store.create(_job("n", callback_url="https://example.com/hook"))
    assert is_new and created == await store.get("n")
    assert created.status is JobStatus.QUEUED and created.callback is not None
    events = await store.events("n")
    assert [(e.seq, e.event, e.job) for e in events] == [(1, "queued", created)]
    await store.close()


async def test_an_idempotency_key_maps_one_body_to_one_job(stores: StoreFactory) -> None:
    store = await stores()
    first, created = await store.create(_job("a", idempotency_key="k", body_hash="h1"))
    again, created_again = await store.create(_job("b", idempotency_key="k", body_hash="h1"))
    with pytest.raises(IdempotencyConflict):
        await store.create(_job("c", idempotency_key="k", body_hash="h2"))
    assert created and not created_again and again.id == first.id == "a"
    assert await store.get("b") is None
    await store.close()


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


async def test_a_progress_event_is_recorded_once_and_never_after_a_later_one(
    stores: StoreFactory
) -> None:
    """Two gateway processes hear each numbered event: the second write of n, and n after n+1,
    change nothing; a new attempt numbers from 1 again (issue 22, #8)."""
    one = await stores()
    two = await stores()
    await one.create(_job("p"))
    assert await one.started("p", "w:p:0", 1, 2_000)
    assert await one.progress("p", 0.1, "a", n=1, attempt=1)
    assert not await two.progress("p", 0.1, "a", n=1, attempt=1)  # the other process
    assert await two.progress("p", 0.3, "c", n=3, attempt=1)
    assert not await one.progress("p", 0.2, "b", n=2, attempt=1)  # a lagging process
    assert await one.progress_recorded("p") == 3
    assert await one.started("p", "w:p:1", 2, 3_000)  # redelivered: the second attempt
    assert not await one.progress("p", 0.9, "old", n=4, attempt=1)  # the first one's, late
    assert await two.progress("p", 0.05, "again", n=1, attempt=2)
    fractions = [r.job.progress.fraction for r in await one.events("p")
                 if r.event == "progress" and r.job.progress is not None]
    assert fractions == [0.1, 0.3, 0.05]
    await one.close()
    await two.close()


async def test_finished_jobs_past_retention_are_purged(stores: StoreFactory) -> None:
    store = await stores()
    await store.create(_job("old"))
    await store.finish("old", JobStatus.SUCCEEDED, None, None, 1_000)
    await store.create(_job("running"))
    assert await store.purge(finished_before_ms=5_000) == 1
    assert await store.get("old") is None and await store.get("running") is not None
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


async def test_a_store_file_from_before_publish_claims_gains_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, method TEXT NOT NULL, status TEXT NOT NULL, "
        "result TEXT, error TEXT, progress TEXT, attempts INTEGER NOT NULL DEFAULT 0, worker "
        "TEXT, created_ms INTEGER NOT NULL, started_ms INTEGER, finished_ms INTEGER, priority "
        "INTEGER NOT NULL DEFAULT 0, deadline_ms INTEGER, callback_url TEXT, idempotency_key "
        "TEXT UNIQUE, body_hash TEXT, cancel_pending INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO jobs (id, method, status, created_ms) VALUES ('old', 'echo', 'queued', 1);")
    old.close()
    store = SqliteJobStore(path)
    assert await store.claim_publish("old", 9_000, lease_ms=1_000) == "done"  # was published
    await store.create(_job("new", publish_lease_ms=5_000))
    assert await store.claim_publish("new", 6_000, lease_ms=1_000) == "claimed"
    await store.close()


async def test_stores_sharing_a_file_or_database_share_one_id_and_so_one_replies_queue(
    stores: StoreFactory
) -> None:
    one, two = await stores(), await stores()
    assert one.store_id == two.store_id and len(one.store_id) >= 12
    await one.close()
    await two.close()


async def test_a_job_belongs_to_its_owner_and_a_running_jobs_cancel_is_replayed(
    stores: StoreFactory
) -> None:
    store = await stores()
    await store.create(_job("mine", owner="alice-print"))
    await store.create(_job("open"))
    assert await store.owner("mine") == "alice-print"
    assert await store.owner("open") is None
    assert await store.started("mine", "w:p:0", 1, 2_000)
    await store.request_cancel("mine")
    assert await store.pending_cancels(10_000) == [("mine", "echo")]  # running: replayed
    await store.finish("mine", JobStatus.SUCCEEDED, 1, None, 3_000, "w:p:0", 2, 2_500)
    assert await store.pending_cancels(0) == []  # an outcome ends it
    job = await store.get("mine")
    assert job is not None and job.attempts == 2 and job.started_at is not None
    assert job.started_at.endswith("00:00:02.500Z")  # the reply's own times win
    await store.close()


async def test_every_state_and_progress_change_is_an_event_in_order(
    stores: StoreFactory
) -> None:
    store = await stores()
    await store.create(_job("e"))
    assert await store.started("e", "w:p:0", 1, 2_000)
    assert await store.progress("e", 0.25, "a quarter")
    assert not await store.progress("e", 0.25, "a quarter")  # another gateway heard it too
    assert await store.progress("e", 0.5, "half")
    assert not await store.progress("nobody", 0.5, "")  # no job, no event
    assert await store.finish("e", JobStatus.SUCCEEDED, {"done": True}, None, 3_000)
    assert not await store.finish("e", JobStatus.FAILED, None, None, 4_000)  # final: no event
    events = await store.events("e")
    assert [(e.seq, e.event) for e in events] == [
        (1, "queued"), (2, "running"), (3, "progress"), (4, "progress"), (5, "succeeded")]
    assert [e.job.progress.note if e.job.progress else None for e in events[:4]] == [
        None, None, "a quarter", "half"]  # each event carries the job as of that event
    assert events[-1].job.result == {"done": True}
    assert [e.seq for e in await store.events("e", after=3)] == [4, 5]
    await store.close()


async def test_a_reply_ahead_of_its_start_event_still_logs_the_job_running_first(
    stores: StoreFactory
) -> None:
    """Start events are fire and forget and may arrive after the reply (or never): the reply's
    own start time puts `running` in the log before the terminal event, once."""
    store = await stores()
    await store.create(_job("r"))
    assert await store.finish("r", JobStatus.SUCCEEDED, {"ok": 1}, None, 3_000,
                              worker="w:p:0", attempt=1, started_ms=2_000)
    assert not await store.started("r", "w:p:0", 1, 2_000)  # the late start event: no change
    events = await store.events("r")
    assert [(e.seq, e.event) for e in events] == [(1, "queued"), (2, "running"), (3, "succeeded")]
    assert events[1].job.status == "running" and events[1].job.worker == "w:p:0"
    job = await store.get("r")
    assert job is not None and job.attempts == 1 and job.started_at is not None
    # Cancelled while queued, never started: no running event.
    await store.create(_job("c"))
    assert await store.cancel_queued("c", 1_000)
    assert [e.event for e in await store.events("c")] == ["queued", "cancelled"]
    # its cancel is replayed (in the same write) until a worker's outcome says it saw it
    assert await store.pending_cancels(0) == [("c", "echo")]
    assert not await store.cancel_queued("c", 1_500)  # final already
    assert await store.finish("c", JobStatus.CANCELLED, None, None, 2_000) is None
    assert await store.pending_cancels(0) == []
    await store.close()


async def test_the_newest_jobs_are_listed_first_filtered_by_state_method_and_owner(
    stores: StoreFactory
) -> None:
    store = await stores()
    await store.create(NewJob(id="old", method="echo", created_ms=1_000, owner="alice",
                              callback_url="https://example.com/hook"))
    await store.create(NewJob(id="mid", method="greet", created_ms=2_000, owner="bob"))
    await store.create(NewJob(id="new", method="echo", created_ms=3_000, owner="alice"))
    assert await store.finish("old", JobStatus.SUCCEEDED, {"n": 1}, None, 4_000)
    assert [j.id for j in await store.recent(10)] == ["new", "mid", "old"]
    assert [j.id for j in await store.recent(2)] == ["new", "mid"]
    assert [j.id for j in await store.recent(10, status="queued")] == ["new", "mid"]
    assert [j.id for j in await store.recent(10, method="echo")] == ["new", "old"]
    assert [j.id for j in await store.recent(10, owner="alice")] == ["new", "old"]
    old = (await store.recent(10, status="succeeded"))[0]
    assert old.result == {"n": 1} and old.callback is not None  # the whole job, callback too
    assert old.callback.state == "pending"
    await store.close()


async def test_sqlite_commits_concurrent_writes_together_each_undone_alone(
    tmp_path: Path
) -> None:
    """Group commit: the writes waiting for the store's thread share one transaction and one
    fsync; a write that fails (here an Idempotency-Key reused with another body) is undone
    alone, and a read made after a write sees it."""
    import asyncio

    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    await store.create(_job("keyed", idempotency_key="k", body_hash="h1"))
    writes = [store.create(_job(f"j{i}", callback_url="https://example.com/hook"))
              for i in range(64)]
    conflicting = store.create(_job("other", idempotency_key="k", body_hash="h2"))
    read_after = store.get("j63")
    outcomes = await asyncio.gather(*writes, conflicting, read_after, return_exceptions=True)
    assert all(isinstance(o, tuple) and o[1] for o in outcomes[:64])
    assert isinstance(outcomes[64], IdempotencyConflict)
    assert outcomes[65] is not None and outcomes[65].id == "j63"  # type: ignore[union-attr]
    groups = store._writes.commits
    assert groups < 10 and store._writes.writes == 66  # 66 writes, a few commits
    await asyncio.gather(*(store.finish(f"j{i}", JobStatus.SUCCEEDED, i, None, 2_000)
                           for i in range(64)))
    assert store._writes.commits - groups < 10
    await store.close()

    reopened = sqlite3.connect(tmp_path / "jobs.sqlite3")  # durable, as another process sees it
    assert reopened.execute("SELECT COUNT(*) FROM jobs WHERE status = 'succeeded'"
                            ).fetchone() == (64,)
    assert reopened.execute("SELECT COUNT(*) FROM outbox").fetchone() == (64,)
    assert reopened.execute("SELECT COUNT(*) FROM jobs WHERE id = 'other'").fetchone() == (0,)
    reopened.close()
