"""The one poll-until-deadline of the fleet's own code (tests have theirs, in
tests/support/waiting.py): for a state another process changes, which nothing announces."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def poll(check: Callable[[], Awaitable[bool]], timeout: float, every: float) -> bool:
    """Ask `check` every `every` s until it answers True (then True) or `timeout` s have passed
    (then False: the caller says what that means)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(every)
    return True
