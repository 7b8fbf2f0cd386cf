"""Batched methods (SPEC 1.1): the deliveries of one method gathered into one handler call.

A batch starts with its first request and is called when it holds `batch` requests, or the
consumer's prefetch of them (it can never hold more deliveries than that), or `batch_wait`
seconds after its first request, whichever comes first; while every handler slot is busy it
keeps gathering, since it could only wait for one. Each request keeps its own message,
reply, error and ack: the batch only decides when the handler runs and hands each request its
own outcome (`workers.consumer.outcome.run_batch`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from transport.background import Background
from workers.handlers import Handler

R = TypeVar("R")  # what a batch call hands each of its items (the dispatcher: a Settle)


@dataclass
class BatchStats:
    calls: int = 0
    requests: int = 0
    last_size: int = 0

    def as_dict(self) -> dict[str, float]:
        mean = self.requests / self.calls if self.calls else 0.0
        return {"calls": self.calls, "requests": self.requests, "last_size": self.last_size,
                "mean_size": round(mean, 2)}


@dataclass
class Batcher(Generic[R]):
    handler: Handler
    capacity: Callable[[], int]  # the prefetch in force
    # Runs the handler for a list of items, one result per item.
    call: Callable[[Handler, list[Any]], Awaitable[list[R]]]
    busy: Callable[[], bool] = lambda: False  # no handler slot free: a batch would only wait
    stats: BatchStats = field(default_factory=BatchStats)
    _waiting: list[tuple[Any, asyncio.Future[R]]] = field(default_factory=list)
    _timer: asyncio.TimerHandle | None = None
    _running: Background = field(default_factory=Background)

    async def submit(self, item: Any) -> R:
        """Add one request's item to the batch being gathered; its result when the batch ran."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if len(self._waiting) >= self._size():
            self._flush()
        elif self._timer is None:
            self._arm()
        return await asyncio.shield(done)

    def _size(self) -> int:
        return min(self.handler.batch or 1, max(self.capacity(), 1))

    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.handler.batch_wait, self._due)

    def _due(self) -> None:
        """`batch_wait` passed. While every handler slot is taken the batch could only wait for
        one: keep gathering (look again after another `batch_wait`), so a busy consumer serves
        fuller batches instead of a queue of small ones."""
        self._timer = None
        if self.busy() and len(self._waiting) < self._size():
            self._arm()
            return
        self._flush()

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._waiting = self._waiting, []
        if batch:
            self._running.start(self._run(batch))

    async def _run(self, batch: list[tuple[Any, asyncio.Future[R]]]) -> None:
        self.stats.calls += 1
        self.stats.requests += len(batch)
        self.stats.last_size = len(batch)
        try:
            outcomes = await self.call(self.handler, [item for item, _ in batch])
        except BaseException as exc:
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            raise
        for (_, done), outcome in zip(batch, outcomes, strict=True):
            if not done.done():
                done.set_result(outcome)
