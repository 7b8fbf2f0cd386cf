"""The consumer's subscription to its pool queue, and live prefetch changes (SPEC).

RabbitMQ 4.x refuses channel-wide (global) QoS, and a per-consumer limit only applies to consumers
created after it. So a change cancels the consumer (waiting for cancel-ok: aiormq drops deliveries
for a tag it no longer knows), lets the handlers finish and ack what it holds, and consumes again
under the new limit. The broker's unacked count never exceeds the value in force.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from workers.consumer.tracker import InFlight

OnMessage = Callable[[AbstractIncomingMessage], Awaitable[Any]]


class Subscription:
    def __init__(self, channel: AbstractChannel, queue: AbstractQueue, on_message: OnMessage,
                 in_flight: InFlight) -> None:
        self._channel = channel
        self._queue = queue
        self._on_message = on_message
        self._in_flight = in_flight
        self._tag: str | None = None
        self._lock = asyncio.Lock()
        self.prefetch = 0

    @property
    def consuming(self) -> bool:
        return self._tag is not None

    async def start(self, prefetch: int) -> None:
        async with self._lock:
            await self._consume(prefetch)

    async def change(self, prefetch: int, drain_timeout: float | None = None) -> bool:
        """Apply a new prefetch; returns False when the value was already in force."""
        async with self._lock:
            if prefetch == self.prefetch and self._tag is not None:
                return False
            await self._cancel()
            await self._in_flight.idle(drain_timeout)
            await self._consume(prefetch)
            return True

    async def stop(self) -> None:
        async with self._lock:
            await self._cancel()

    async def _consume(self, prefetch: int) -> None:
        # Per-consumer QoS (global_=False) applies to the consumers created after it.
        await self._channel.set_qos(prefetch_count=prefetch)
        self._tag = await self._queue.consume(self._on_message)
        self.prefetch = prefetch

    async def _cancel(self) -> None:
        if self._tag is not None:
            tag, self._tag = self._tag, None
            await self._queue.cancel(tag, nowait=False)
