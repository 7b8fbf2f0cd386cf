"""Background tasks owned by a lifespan: started on enter, cancelled and awaited on exit."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def stop(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel tasks and wait until each has finished unwinding."""
    for task in tasks:
        if task is None:
            continue
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
