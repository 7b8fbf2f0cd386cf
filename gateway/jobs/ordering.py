"""One lane per key: what is held for one key runs in arrival order, other keys run alongside.

asyncio.Lock wakes its waiters first come, first served, so the tasks a consumer starts for one
job's events, in delivery order, record them in that order. A lane exists while someone holds
or waits for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Lanes:
    def __init__(self) -> None:
        self._lanes: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._lanes.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._lanes[key]
