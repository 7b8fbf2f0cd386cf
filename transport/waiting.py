"""The one poll-until-deadline of the fleet's own code, async and blocking (tests have theirs, in
tests/support/waiting.py): for a state another process changes, which nothing announces."""

from __future__ import annotations

import asyncio
import time
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


def poll_blocking(check: Callable[[], bool], timeout: float, every: float) -> bool:
    """`poll` for code without an event loop (the command line, a node's start, a file another
    process is writing): the same answer, sleeping the thread between checks. `check` may
    raise to end the wait early (a process it waits on exited)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)
    return True
