"""In-process wake-ups for whoever follows a job (SSE streams, `Prefer: wait`)."""

from __future__ import annotations

import asyncio
from collections import defaultdict


class JobHub:
    def __init__(self) -> None:
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)

    def notify(self, job_id: str) -> None:
        for event in self._waiters.get(job_id, ()):
            event.set()

    def follow(self, job_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters[job_id].add(event)
        return event

    def followed(self) -> list[str]:
        """The jobs someone in this process follows now."""
        return list(self._waiters)

    def unfollow(self, job_id: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(job_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[job_id]
