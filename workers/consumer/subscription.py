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

from aio_pika.abc import AbstractQueue, AbstractRobustChannel, AbstractRobustConnection
from aiormq.abc import AbstractChannel as RawChannel
from aiormq.abc import DeliveredMessage

from workers.consumer.delivery import Delivery
from workers.consumer.tracker import InFlight

OnMessage = Callable[[Delivery], Awaitable[Any]]


class Subscription:
    def __init__(self, connection: AbstractRobustConnection, channel: AbstractRobustChannel,
                 queue: AbstractQueue, on_message: OnMessage, in_flight: InFlight) -> None:
        self._channel = channel
        self._raw: RawChannel | None = None
        # Consumed at the AMQP level (see workers.consumer.delivery): after a reconnect the
        # robust channel restores its QoS, and we consume again under the value in force.
        connection.reconnect_callbacks.add(self._restore)
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
        self._raw = await self._channel.get_underlay_channel()
        ok = await self._raw.basic_consume(self._queue.name, self._deliver, no_ack=False)
        self._tag = ok.consumer_tag
        self.prefetch = prefetch

    async def _deliver(self, raw: DeliveredMessage) -> None:
        await self._on_message(Delivery(raw))

    async def _restore(self, *args: object) -> None:
        async with self._lock:
            if self._tag is not None:  # we were consuming when the connection went
                await self._consume(self.prefetch)

    async def _cancel(self) -> None:
        if self._tag is not None:
            tag, self._tag = self._tag, None
            if self._raw is not None and not self._raw.is_closed:
                await self._raw.basic_cancel(tag, nowait=False)
