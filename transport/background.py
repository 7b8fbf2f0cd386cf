"""Work an owner runs beside its callers, and the one way it ends: the owner's close cancels
every task it started and waits until each has finished unwinding (none outlives its owner)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any


async def stop(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel tasks and wait until each has finished unwinding."""
    for task in tasks:
        if task is None:
            continue
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


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
        """Cancel them all and wait for each (their errors, if any, are theirs to log)."""
        running = list(self._tasks)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
