"""A handler slot (one of a consumer's `concurrency`), taken unless the consumer is leaving."""

from __future__ import annotations

import asyncio
import contextlib


async def take_slot(slots: asyncio.Semaphore, leaving: asyncio.Event) -> bool:
    """A slot of `slots`, or False once `leaving` is set. A task cancelled while it waits (its
    delivery's channel closed) holds no slot afterwards, even when the slot came free in the
    same moment: otherwise that slot is gone for good, and with one slot per consumer every
    later delivery waits forever (CI's SIGSTOP scenario: a consumer resumed after its connection
    was closed served nothing again)."""
    if leaving.is_set():
        return False
    if not slots.locked():  # the usual case: no task, no wait
        await slots.acquire()
        return True
    acquire = asyncio.ensure_future(slots.acquire())
    left = asyncio.ensure_future(leaving.wait())
    try:
        await asyncio.wait({acquire, left}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        if acquire.done() and not acquire.cancelled() and acquire.exception() is None:
            slots.release()  # it was ours already: give it back
        else:
            acquire.cancel()
        raise
    finally:
        left.cancel()
    if not acquire.done():
        acquire.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await acquire
    if acquire.cancelled():
        return False
    if leaving.is_set():
        slots.release()
        return False
    return True
