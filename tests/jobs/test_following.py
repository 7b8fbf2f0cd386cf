"""Following a job (SSE, WebSocket, `?wait=`) as a unit over a real SQLite store: a follower
hears every event up to the terminal one, however the job's end falls between its reads."""

from __future__ import annotations

from pathlib import Path

from gateway.jobs.following import Followers
from gateway.jobs.hub import JobHub
from gateway.store import JobStore, SqliteJobStore
from gateway.store.rows import JobEventRecord
from protocol import JobStatus
from tests.support.stores import new_job


class EndsBetweenReads(SqliteJobStore):
    """A store whose job ends right after a follower's first read of its events found none:
    the race of a job ending between a follower's two reads (its events, then its state)."""

    raced = False

    async def events(self, job_id: str, after: int = 0) -> list[JobEventRecord]:
        found = await super().events(job_id, after)
        if not found and not self.raced:
            self.raced = True
            await self.finish(job_id, JobStatus.SUCCEEDED, {"ok": 1}, None, 3_000)
        return found


async def _followed(store: JobStore, after: int) -> list[str]:
    return [record.event async for record in Followers(store, JobHub()).follow("a", after)]


async def test_a_job_that_ends_between_a_followers_reads_still_sends_its_end(
    tmp_path: Path
) -> None:
    store = EndsBetweenReads(tmp_path / "jobs.sqlite3")
    await store.create(new_job("a"))
    assert await store.started("a", "w:p:0", 1, 2_000)
    try:
        assert await _followed(store, after=2) == ["succeeded"]  # it was lost: nothing
    finally:
        await store.close()


async def test_a_follower_resuming_at_or_past_the_end_hears_nothing_and_ends(
    tmp_path: Path
) -> None:
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    await store.create(new_job("a"))
    await store.finish("a", JobStatus.SUCCEEDED, {"ok": 1}, None, 3_000)
    try:
        everything = await _followed(store, after=0)
        assert everything[-1] == "succeeded"
        assert await _followed(store, after=len(everything)) == []
        assert await _followed(store, after=99) == []
    finally:
        await store.close()
