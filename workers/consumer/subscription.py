"""The consumer's subscription to its pool queue: live prefetch changes, and its restoration
after the broker closed its channel or cancelled it (SPEC: worker semantics).

RabbitMQ 4.x refuses channel-wide (global) QoS, and a per-consumer limit only applies to consumers
created after it. So a change cancels the consumer (waiting for cancel-ok: aiormq drops deliveries
for a tag it no longer knows), lets the handlers finish and ack what it holds, and consumes again
under the new limit. The broker's unacked count never exceeds the value in force.

We consume at the AMQP level (see `workers.consumer.delivery`), which aio-pika's robust channel
does not restore. The broker closes a *channel* (not the connection) on `consumer_timeout` or a
PRECONDITION_FAILED, and cancels a consumer whose queue was deleted; aio-pika reopens the channel
itself (after a reconnect too) and fires the channel's `reopen_callbacks`, never the connection's
`reconnect_callbacks` for a channel alone. So we listen there, and to the broker's basic.cancel,
and consume again, once (under a lock, only while no live consumer exists), under the value in
force. While it is down `consuming` is False and the beat says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aio_pika.abc import AbstractQueue, AbstractRobustChannel
from aiormq.abc import AbstractChannel as RawChannel
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from workers.consumer.delivery import Delivery, InFlight

log = logging.getLogger("rpcfleet.worker")

OnMessage = Callable[[Delivery], Awaitable[Any]]
OnChange = Callable[[], None]
RESTORE_RETRY_S = 1.0  # between attempts to consume again while the broker refuses


class Subscription:
    def __init__(self, channel: AbstractRobustChannel, queue: AbstractQueue,
                 on_message: OnMessage, in_flight: InFlight,
                 redeclare: Callable[[], Awaitable[None]],
                 on_change: OnChange = lambda: None,
                 before_restore: Callable[[], Awaitable[None]] | None = None) -> None:
        self._channel = channel
        self._raw: RawChannel | None = None
        channel.reopen_callbacks.add(self._reopened)
        self._queue = queue
        self._on_message = on_message
        self._in_flight = in_flight
        self._redeclare = redeclare  # the queue may be gone (deleted): declare it again
        self._on_change = on_change
        self._before_restore = before_restore  # e.g. learn the cancels missed while away
        self._tag: str | None = None
        self._wanted = False  # consuming is what we should be doing (not drained, not stopped)
        self._lock = asyncio.Lock()
        self._restoring: asyncio.Task[None] | None = None
        self._changing = False  # between the cancel and the new consume of a prefetch change
        self.prefetch = 0

    @property
    def consuming(self) -> bool:
        return self._tag is not None and self._raw is not None and not self._raw.is_closed

    @property
    def changing(self) -> bool:
        return self._changing

    @property
    def serving(self) -> bool:
        """Consuming, or changing its prefetch: the pool's requests wait for it meanwhile (it
        re-subscribes once what it holds has finished), so the fleet still counts it."""
        return self.consuming or self._changing

    async def start(self, prefetch: int) -> None:
        async with self._lock:
            self._wanted = True
            await self._consume(prefetch)

    async def change(self, prefetch: int, drain_timeout: float | None = None) -> bool:
        """Apply a new prefetch; returns False when the value was already in force."""
        async with self._lock:
            if prefetch == self.prefetch and self.consuming:
                return False
            self._changing = True
            try:
                await self._cancel()
                await self._in_flight.idle(drain_timeout)
                await self._consume(prefetch)
            finally:
                self._changing = False
            return True

    async def stop(self) -> None:
        async with self._lock:
            self._wanted = False
            await self._cancel()

    async def _consume(self, prefetch: int) -> None:
        # Per-consumer QoS (global_=False) applies to the consumers created after it.
        await self._channel.set_qos(prefetch_count=prefetch)
        raw = await self._channel.get_underlay_channel()
        if raw is not self._raw:
            raw.on_consumer_cancel_callbacks.add(self._cancelled_by_broker)
        self._raw = raw
        ok = await raw.basic_consume(self._queue.name, self._deliver, no_ack=False)
        self._tag = ok.consumer_tag
        self.prefetch = prefetch

    async def _deliver(self, raw: DeliveredMessage) -> None:
        await self._on_message(Delivery(raw))

    # -- restoration ----------------------------------------------------------------------------
    def _reopened(self, *args: object) -> None:
        # Called inside the channel's own restore: consume from a task, not from here.
        log.warning("the subscription's channel was reopened; consuming again")
        self._schedule_restore(redeclare=False)

    def _cancelled_by_broker(self, frame: Basic.Cancel) -> None:
        if frame.consumer_tag != self._tag:
            return
        log.warning("the broker cancelled the subscription (its queue deleted?); consuming again")
        self._tag = None
        self._schedule_restore(redeclare=True)

    def _schedule_restore(self, redeclare: bool) -> None:
        self._on_change()
        if self._restoring is None or self._restoring.done():
            self._restoring = asyncio.ensure_future(self._restore(redeclare))

    async def _restore(self, redeclare: bool) -> None:
        while True:
            try:
                async with self._lock:
                    if not self._wanted or self.consuming:
                        return  # stopped meanwhile, or already back: never a second consumer
                    await self._channel.ready()
                    if redeclare:
                        await self._redeclare()
                    if self._before_restore is not None:
                        await self._before_restore()
                    await self._consume(self.prefetch)
                log.info("subscription restored at prefetch %s", self.prefetch)
                self._on_change()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker still refuses: try again shortly
                log.warning("could not consume again yet: %r", exc)
                redeclare = True
                await asyncio.sleep(RESTORE_RETRY_S)

    async def _cancel(self) -> None:
        if self._tag is not None:
            tag, self._tag = self._tag, None
            if self._raw is not None and not self._raw.is_closed:
                await self._raw.basic_cancel(tag, nowait=False)
