"""JobService's submission and cancel decisions, rule by rule (SPEC: jobs, Idempotency-Key;
1.2: publish outcomes): what a submission becomes for each thing the broker and the store may do,
and a cancel that races the job's end. A unit: the
store is a real SQLite file; the broker link is a stand-in answering each publish as the test
says (how the real broker answers is tested end to end: tests/jobs/test_accepted.py,
tests/jobs/test_published_unrecorded.py, tests/cluster/test_confirms.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import BadRequest, Conflict, Overloaded, PublishedUnrecorded, Unavailable
from gateway.fleet.view import FleetView
from gateway.jobs.service import JobService
from gateway.metrics import Metrics
from gateway.settings import GatewaySettings
from gateway.store import JobStore, SqliteJobStore
from gateway.webhooks import UrlGuard
from protocol import JobStatus, names, now_ms
from transport.confirms import ConfirmingChannel, Nack, NackJudge, PublishNacked
from transport.publishing import Confirmed

BODY = json.dumps({"params": {"n": 1}}).encode()


class FakeLink:
    """The broker link as JobService's publish sees it; `answers` says what each publish gets:
    "ack", "return", "full" (a nack: refused), "electing" (a nack a new channel cannot fix),
    "silent" (no confirm in time)."""

    def __init__(self) -> None:
        self.answers: list[str] = []
        self.published: list[str] = []  # correlation ids, in order
        self.channel = object()
        self.up = True
        self.confirming = ConfirmingChannel(NackJudge(quorum=False), retire_after=1.0)
        self.judge = self.confirming.judge

    def when_connected(self, callback: object) -> None:
        """The recorder and the cancels start on a connection: none comes in a unit."""

    def route(self, method: str) -> tuple[str, str]:
        return names.EXCHANGE, method

    def renew(self, why: str = "nacked") -> None:
        return None

    async def publish(self, body: bytes, exchange: str, key: str, properties: Any, *,
                      confirm: bool, timeout: float | None, mandatory: bool = False
                      ) -> Confirmed:
        answer = self.answers.pop(0) if self.answers else "ack"
        self.published.append(properties.correlation_id)
        if answer == "full":
            raise PublishNacked(key, Nack.REFUSED)
        if answer == "electing":
            raise PublishNacked(key, Nack.STALLED)
        if answer == "silent":
            raise TimeoutError
        return Confirmed.RETURNED if answer == "return" else Confirmed.ACKED


class FailingMarks(SqliteJobStore):
    """The store refuses to mark a job published while `refuse` is set (a database outage)."""

    refuse = False

    async def mark_published(self, job_id: str) -> None:
        if self.refuse:
            raise OSError("disk I/O error")
        await super().mark_published(job_id)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FailingMarks]:
    opened = FailingMarks(tmp_path / "jobs.sqlite3")
    yield opened
    await opened.close()


@pytest.fixture
async def link() -> FakeLink:
    return FakeLink()


@pytest.fixture
async def service(store: JobStore, link: FakeLink) -> AsyncIterator[JobService]:
    settings = GatewaySettings(publish_timeout=1.0)
    jobs = JobService(settings, link, FleetView(), Metrics(), store,  # type: ignore[arg-type]
                      None, None, UrlGuard([]))
    jobs.outcomes.ready.set()  # as once the replies queue is declared
    yield jobs
    await jobs.close()


async def test_a_confirmed_submission_is_a_new_queued_job(service: JobService,
                                                          link: FakeLink) -> None:
    job, new = await service.submit("echo", BODY, None)
    assert new and job.status is JobStatus.QUEUED
    assert link.published == [job.id]


async def test_a_refused_publish_leaves_no_job_and_no_id(service: JobService, link: FakeLink,
                                                         store: JobStore) -> None:
    link.answers = ["full"]
    with pytest.raises(Overloaded) as refused:
        await service.submit("echo", BODY, "key-1")
    assert refused.value.call_id is None  # nothing was enqueued: nothing to look up
    assert await store.recent(10, None, None, None) == []


async def test_a_queue_changing_leader_is_unavailable_not_full(service: JobService,
                                                               link: FakeLink) -> None:
    link.answers = ["electing"]
    with pytest.raises(Unavailable) as refused:
        await service.submit("echo", BODY, None)
    assert refused.value.call_id is None


async def test_an_unconfirmed_publish_keeps_the_job_and_answers_its_id(
    service: JobService, link: FakeLink, store: JobStore
) -> None:
    link.answers = ["silent"]
    with pytest.raises(Overloaded) as unknown:  # NotConfirmed: 503, the broker may hold it
        await service.submit("echo", BODY, "key-1")
    job_id = unknown.value.call_id
    assert job_id is not None and await store.get(job_id) is not None


async def test_the_same_key_and_body_again_is_the_same_job_not_a_second_publish(
    service: JobService, link: FakeLink
) -> None:
    first, _ = await service.submit("echo", BODY, "key-1")
    again, new = await service.submit("echo", BODY, "key-1")
    assert (again.id, new) == (first.id, False)
    assert link.published == [first.id]


async def test_the_same_key_with_another_body_is_refused(service: JobService) -> None:
    await service.submit("echo", BODY, "key-1")
    with pytest.raises(BadRequest, match="Idempotency-Key"):
        await service.submit("echo", json.dumps({"params": {"n": 2}}).encode(), "key-1")


async def test_a_key_whose_publish_is_still_in_doubt_is_held_then_published_once_its_lease_ends(
    service: JobService, link: FakeLink
) -> None:
    link.answers = ["silent"]
    with pytest.raises(Overloaded) as unknown:
        await service.submit("echo", BODY, "key-1")
    job_id = unknown.value.call_id
    with pytest.raises(Overloaded, match="being published") as held:  # within the lease
        await service.submit("echo", BODY, "key-1")
    assert held.value.call_id == job_id
    await service.store.release_publish(job_id)  # as when the submitter's lease lapses
    again, new = await service.submit("echo", BODY, "key-1")
    assert (again.id, new) == (job_id, False)
    assert link.published == [job_id, job_id]  # published again, under its original id


async def test_a_job_the_broker_took_but_the_store_could_not_mark_is_not_published_twice(
    service: JobService, link: FakeLink, store: FailingMarks
) -> None:
    store.refuse = True
    with pytest.raises(PublishedUnrecorded) as unrecorded:
        await service.submit("echo", BODY, "key-1")
    job_id = unrecorded.value.call_id
    assert job_id is not None
    with pytest.raises(Overloaded, match="being published"):  # marked in the background
        await service.submit("echo", BODY, "key-1")
    assert link.published == [job_id]


async def test_another_gateway_does_not_publish_again_while_the_submitter_may_still_mark_it(
    service: JobService, link: FakeLink, store: FailingMarks, tmp_path: Path
) -> None:
    """The broker took it; the submitter's store writes fail (a host cut from the database)
    and it marks the job in the background for up to half the abandon period. A retry under the
    same key reaching another gateway (whose store works) past the submitter's lease must not
    publish it a second time: the job would run twice."""
    store.refuse = True
    with pytest.raises(PublishedUnrecorded) as unrecorded:
        await service.submit("echo", BODY, "key-1")
    job_id = unrecorded.value.call_id
    assert job_id is not None
    other = JobService(GatewaySettings(publish_timeout=1.0), link,  # type: ignore[arg-type]
                       FleetView(), Metrics(), SqliteJobStore(tmp_path / "jobs.sqlite3"), None,
                       None, UrlGuard([]))
    other.outcomes.ready.set()
    try:
        import sqlite3

        with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:  # the submitter's lease is over
            db.execute("UPDATE jobs SET publish_lease_ms = ? WHERE id = ?",
                       (now_ms() - 10_000, job_id))
        with pytest.raises(Overloaded, match="being published"):
            await other.submit("echo", BODY, "key-1")
    finally:
        await other.close()
        await other.store.close()
    assert link.published == [job_id]


async def test_a_method_no_pool_serves_leaves_no_job(service: JobService, link: FakeLink,
                                                     store: JobStore) -> None:
    link.answers = ["return"]
    with pytest.raises(Exception, match="no pool serves"):
        await service.submit("echo", BODY, None)
    assert await store.recent(10, None, None, None) == []


# -- a cancel racing the job's end (SPEC: DELETE /v1/jobs/{id} is 409 once the job ended) ------

async def _ending_first(store: JobStore, job_id: str, write: Any) -> Any:
    """`write` of the store, run just after the job succeeded: its outcome won the race."""
    async def raced(*args: Any) -> Any:
        await store.finish(job_id, JobStatus.SUCCEEDED, {"done": True}, None, 2_000_000_000_000)
        return await write(*args)
    return raced


@pytest.mark.parametrize("running", [False, True])
async def test_a_cancel_that_loses_the_race_with_the_jobs_end_is_a_conflict(
    service: JobService, store: JobStore, monkeypatch: pytest.MonkeyPatch, running: bool
) -> None:
    job, _ = await service.submit("echo", BODY, None)
    if running:
        await store.started(job.id, "w1", 1, 1_900_000_000_000)
    write = "request_cancel" if running else "cancel_queued"
    monkeypatch.setattr(store, write, await _ending_first(store, job.id, getattr(store, write)))
    with pytest.raises(Conflict, match="already ended: succeeded"):
        await service.cancel(job.id)
    ended = await store.get(job.id)
    assert ended is not None and ended.status is JobStatus.SUCCEEDED


async def test_a_cancel_of_a_queued_job_that_did_not_race_cancels_it(
        service: JobService) -> None:
    job, _ = await service.submit("echo", BODY, None)
    assert (await service.cancel(job.id)).status is JobStatus.CANCELLED
    with pytest.raises(Conflict):
        await service.cancel(job.id)


async def test_a_publish_taken_over_that_stays_unconfirmed_keeps_its_lease(
    service: JobService, link: FakeLink
) -> None:
    """The gateway that took a publish over may have had it queued (no confirm in time): it
    must not give the lease back, or the next retry anywhere publishes a third copy."""
    link.answers = ["silent"]
    with pytest.raises(Overloaded) as unknown:
        await service.submit("echo", BODY, "key-1")
    job_id = unknown.value.call_id
    assert job_id is not None
    await service.store.release_publish(job_id)  # its submitter's lease is over
    link.answers = ["silent"]
    with pytest.raises(Overloaded):  # taken over, and unknown again
        await service.submit("echo", BODY, "key-1")
    with pytest.raises(Overloaded, match="being published"):
        await service.submit("echo", BODY, "key-1")
    assert link.published == [job_id, job_id]
