"""Following jobs (SSE, WebSocket, `?wait=`): a follower wakes as soon as its job's state is
stored, by this process (the hub) or by another gateway (its announcement on rpcfleet.events,
or, when that was lost, the sweep each FOLLOW_POLL_S: one store query for every followed job)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable

from gateway.jobs.hub import JobHub
from gateway.store import JobStore
from gateway.store.rows import TERMINAL_EVENTS, JobEventRecord
from protocol import Job

log = logging.getLogger("rpcfleet.jobs")

FOLLOW_POLL_S = 1.0  # the store is swept for followed jobs' changes this often


class Followers:
    def __init__(self, store: JobStore, hub: JobHub) -> None:
        self._store = store
        self._hub = hub

    async def follow(self, job_id: str, after: int = 0) -> AsyncGenerator[JobEventRecord, None]:
        """The job's events after `after`, then the live ones as they are stored, ending with
        the terminal one: every state and progress change, in order (SSE and WebSocket).

        Push-driven: this process's changes wake the follower at once (the hub), and so do the
        changes other gateways announce on rpcfleet.events; one sweep per process each second
        covers the rest (another host's store write whose announcement was lost), one read for
        every followed job (`sweep_followed`). An idle follower costs a waiting task."""
        wake = self._hub.follow(job_id)
        try:
            while True:
                wake.clear()
                records = await self._store.events(job_id, after)
                if not records and await self._ended(job_id):
                    # Ended: resumed at or past its end (Last-Event-ID, ?after=), or it ended
                    # between the two reads, and its last events are there now.
                    records = await self._store.events(job_id, after)
                    if not records:
                        return
                for record in records:
                    after = record.seq
                    yield record
                    if record.event in TERMINAL_EVENTS:
                        return
                await wake.wait()
        finally:
            self._hub.unfollow(job_id, wake)

    async def _ended(self, job_id: str) -> bool:
        job = await self._store.get(job_id)
        return job is None or job.status.terminal

    async def ended_by(self, job: Job, after: int) -> bool:
        """Whether `job` (as just read) ended at or before event `after`: a follower resuming
        there has nothing more to hear (SSE answers it 204, which stops a browser's reconnects)."""
        return job.status.terminal and not await self._store.events(job.id, after)

    async def sweep_followed(self) -> None:
        """Each FOLLOW_POLL_S: wake the followers of the jobs whose latest event changed in the
        store since the last sweep (one query for all of them, however many there are)."""
        seen: dict[str, int] = {}
        while True:
            await asyncio.sleep(FOLLOW_POLL_S)
            followed = self._hub.followed()
            try:
                latest = await self._store.latest_seqs(followed) if followed else {}
            except Exception as exc:  # the next sweep tries again
                log.warning("could not sweep followed jobs: %r", exc)
                continue
            for job_id, seq in latest.items():
                if seen.get(job_id) != seq:
                    seen[job_id] = seq
                    self._hub.notify(job_id)
            seen = {job_id: seq for job_id, seq in seen.items() if job_id in latest}

    async def wait_terminal(self, job_id: str, seconds: float,
                            get: Callable[[str], Awaitable[Job]]) -> Job:
        """The job (read with `get`) once it ended, or as it is after `seconds`."""
        event = self._hub.follow(job_id)
        try:
            deadline = asyncio.get_running_loop().time() + seconds
            while True:
                job = await get(job_id)
                remaining = deadline - asyncio.get_running_loop().time()
                if job.status.terminal or remaining <= 0:
                    return job
                event.clear()
                try:  # woken by an outcome; the timeout also covers outcomes stored elsewhere
                    await asyncio.wait_for(event.wait(), min(remaining, 1.0))
                except TimeoutError:
                    pass
        finally:
            self._hub.unfollow(job_id, event)
