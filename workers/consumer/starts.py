"""A job's `started` event, sent only for a handler still running a moment after it started.

Most jobs end within milliseconds; for them the event is one more message through the broker and
one more store write in every gateway, for a state the reply records anyway: the reply carries
when the handler started, the worker and the attempt, and the store logs the job `running`
before its end when no start event came (the same events, in the same order). So the event
waits `STARTED_EVENT_AFTER_S`; a handler that ends sooner cancels it. A job that reports
progress sends it at once, ahead of the progress (a gateway records progress only for a running
job).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from protocol.clock import now_ms

STARTED_EVENT_AFTER_S = 0.05

JobEventSink = Callable[[str, str, dict[str, Any]], None]


class StartEvents:
    def __init__(self, sink: JobEventSink, after: float = STARTED_EVENT_AFTER_S) -> None:
        self._sink = sink
        self._after = after
        self._waiting: dict[str, tuple[asyncio.TimerHandle, dict[str, Any]]] = {}

    def starting(self, job_id: str, attempt: int) -> None:
        fields = {"attempt": attempt, "at": now_ms()}  # when it started, not when it is sent
        timer = asyncio.get_running_loop().call_later(self._after, self.send_now, job_id)
        self._waiting[job_id] = (timer, fields)

    def send_now(self, job_id: str) -> None:
        """The start event now, if it has not gone yet (its moment came, or progress did)."""
        waiting = self._waiting.pop(job_id, None)
        if waiting is not None:
            waiting[0].cancel()
            self._sink(job_id, "started", waiting[1])

    def ended(self, job_id: str) -> None:
        """The handler ended: its reply tells the rest."""
        waiting = self._waiting.pop(job_id, None)
        if waiting is not None:
            waiting[0].cancel()
