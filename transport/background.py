"""Work an owner runs beside its callers, and the one way it ends: the owner's close cancels
every task it started and waits until each has finished unwinding (none outlives its owner)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


async def _cancelled(tasks: list[asyncio.Future[Any]]) -> list[object]:
    """Cancel the tasks, then wait until every one has finished unwinding: how each ended."""
    for task in tasks:
        task.cancel()
    outcomes: list[object] = await asyncio.gather(*tasks, return_exceptions=True)
    return outcomes


async def stop(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel an owner's long-lived tasks and wait for each; the error one of them ended with
    (other than its cancellation) is raised here once all are done: a loop that crashed is not
    closed in silence."""
    for outcome in await _cancelled([task for task in tasks if task is not None]):
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            raise outcome


class Background:
    """The tasks one owner started that are still running."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def start(self, work: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def stop(self) -> None:
        """Cancel them all and wait for each; their errors are theirs to log (one failed piece
        of work does not stop the owner's close)."""
        await _cancelled(list(self._tasks))
