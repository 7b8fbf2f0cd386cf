"""The job store as a unit, the same specification for both stores: a real SQLite file and a
real PostgreSQL database (a private server), two stores on one as two gateway processes. The
publish claims and the callback outbox: tests/jobs/test_store_outbox.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.store import IdempotencyConflict, NewJob, SqliteJobStore
from protocol import ErrorBody, JobStatus
from tests.support.stores import StoreFactory
from tests.support.stores import new_job as _job


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
    # A second run's reply may come before its start is recorded: the first run's count does
    # not stand for it (its own progress events would be refused once the job has ended).
    assert await one.progress_recorded("p", attempt=2) == 0
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
    assert await store.purge(finished_before_ms=5_000, cancels_since_ms=0) == 1
    assert await store.get("old") is None and await store.get("running") is not None
    await store.close()


async def test_a_job_still_owed_a_callback_or_a_cancel_outlives_its_retention(
        stores: StoreFactory) -> None:
    """A retention shorter than the callback window or the cancels' replay must not drop what
    is still owed: the callback's retries, the cancel a worker has not heard yet."""
    store = await stores()
    await store.create(_job("called", callback_url="https://example.com/hook"))
    await store.finish("called", JobStatus.SUCCEEDED, 1, None, 1_000)  # its callback pending
    await store.create(_job("cancelled"))
    assert await store.cancel_queued("cancelled", 1_000)  # replayed until a worker sees it
    await store.create(_job("done"))
    await store.finish("done", JobStatus.SUCCEEDED, 2, None, 1_000)
    assert await store.purge(finished_before_ms=5_000, cancels_since_ms=500) == 1
    assert await store.get("done") is None
    assert await store.get("called") is not None and await store.get("cancelled") is not None
    # Once owed nothing (the callback ended, the cancel's replay over), they go.
    [delivery] = await store.claim_deliveries(None, 10, 60_000)
    assert await store.delivery_outcome(delivery, delivered=True, error=None, retry_at_ms=None)
    assert await store.purge(finished_before_ms=5_000, cancels_since_ms=2_000) == 2
    assert await store.get("called") is None and await store.get("cancelled") is None
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
    # a second cancel (two DELETEs at once) is not a worker's outcome: still replayed
    assert await store.pending_cancels(0) == [("c", "echo")]
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


def test_a_key_whose_job_is_deleted_between_the_insert_and_the_read_takes_the_key() -> None:
    """Two gateways on one PostgreSQL: B's insert meets A's job for the key, then A deletes it
    (its publish refused) before B reads it. B inserts again, rather than a 500. The steps are
    pure (gateway.store.steps): driven here by hand, the race at the exact statement."""
    from gateway.store import operations as ops
    from gateway.store.dialect import POSTGRES

    steps = ops.create(POSTGRES, NewJob(id="b", method="echo", created_ms=1_000,
                                        idempotency_key="k", body_hash="h"))
    answers = iter([None,  # the insert met A's row
                    None,  # ... which A deleted before the read
                    ("b",)])  # the insert again: the key is B's
    step = next(steps)
    statements = []
    try:
        while True:
            statements.append(step.text.split()[0])
            step = steps.send(next(answers) if step.fetch == "one" else 1)
    except StopIteration as done:
        job, created = done.value
    assert statements[:3] == ["INSERT", "SELECT", "INSERT"]
    assert created and job.id == "b"


async def test_a_write_that_rolls_back_the_whole_group_fails_every_write_of_it(
        tmp_path: Path) -> None:
    """SQLite may roll a whole transaction back on an error (a full disk, an I/O error): the
    writes of the group before it are undone, and those after must not commit one by one while
    reported failed. Here a trigger's RAISE(ROLLBACK) does what such an error does. What each
    caller is told matches what the store holds."""
    import asyncio
    import time

    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        db.execute("CREATE TRIGGER boom BEFORE INSERT ON jobs WHEN NEW.id = 'boom' "
                   "BEGIN SELECT RAISE(ROLLBACK, 'disk I/O error (as SQLite reports one)'); END")
    busy = store._in_thread(time.sleep, 0.3)  # the store's thread busy: the writes gather
    results = await asyncio.gather(*(store.create(_job(name)) for name in ("a", "boom", "c")),
                                   return_exceptions=True)
    await busy
    told = {name: not isinstance(result, BaseException)
            for name, result in zip(("a", "boom", "c"), results, strict=True)}
    held = {name: await store.get(name) is not None for name in ("a", "boom", "c")}
    assert told == held, (results, held)
    assert not told["boom"]
    await store.create(_job("later"))  # the store goes on
    assert await store.get("later") is not None
    await store.close()
