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

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aio_pika.abc import AbstractQueue, AbstractRobustChannel
from aiormq.abc import AbstractChannel as RawChannel
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from transport.consumers import KeptConsumer
from workers.consumer.delivery import Delivery, InFlight

log = logging.getLogger("rpcfleet.worker")

OnMessage = Callable[[Delivery], Awaitable[Any]]
OnChange = Callable[[], None]


class Subscription:
    def __init__(self, channel: AbstractRobustChannel, queue: AbstractQueue,
                 on_message: OnMessage, in_flight: InFlight,
                 redeclare: Callable[[], Awaitable[object]],
                 on_change: OnChange = lambda: None,
                 before_restore: Callable[[], Awaitable[None]] | None = None) -> None:
        self._channel = channel
        self._queue = queue
        self._on_message = on_message
        self._in_flight = in_flight
        self._redeclare = redeclare  # the queue may be gone (deleted): declare it again
        self._before_restore = before_restore  # e.g. learn the cancels missed while away
        self._tag: str | None = None
        self._queue_gone = False  # the broker cancelled us: declare the queue before consuming
        self._changing = 0  # prefetch changes under way (a second may queue behind the first)
        self._watched: RawChannel | None = None  # the AMQP channel we hear basic.cancel on
        self.prefetch = 0
        self._kept = KeptConsumer(channel, self._consume, "the subscription",
                                  prepare=self._prepare, on_change=on_change)

    @property
    def consuming(self) -> bool:
        return self._tag is not None and self._kept.ready

    @property
    def changing(self) -> bool:
        return self._changing > 0

    @property
    def serving(self) -> bool:
        """Consuming, or changing its prefetch: the pool's requests wait for it meanwhile (it
        re-subscribes once what it holds has finished), so the fleet still counts it."""
        return self.consuming or self.changing

    async def start(self, prefetch: int) -> None:
        self.prefetch = prefetch
        await self._kept.start()

    async def change(self, prefetch: int,
                     announce: Callable[[], Awaitable[None]] | None = None) -> bool:
        """Apply a new prefetch; returns False when the value was already in force, or when the
        subscription was stopped (a consumer about to leave takes nothing more). What the
        consumer holds finishes first, however long (SPEC: finish and ack, then consume again:
        a bound would have it consume again still holding, over the new value). `announce` is
        awaited once the change is under way (`changing`), before what the consumer holds has
        finished: the fleet hears the new value at once, not after the longest handler."""
        if not self._kept.wanted or (prefetch == self.prefetch and self.serving):
            return False  # in force, or the change under way already goes there
        self._changing += 1
        try:
            self.prefetch = prefetch
            if announce is not None:
                await announce()
            await self._kept.renew(self._cancel, self._in_flight.idle)
        finally:
            self._changing -= 1
        return True

    async def stop(self) -> None:
        await self._kept.stop(self._cancel)

    async def _consume(self, raw: RawChannel) -> None:
        # Per-consumer QoS (global_=False) applies to the consumers created after it.
        await self._channel.set_qos(prefetch_count=self.prefetch)
        if raw is not self._watched:
            raw.on_consumer_cancel_callbacks.add(self._cancelled_by_broker)
            self._watched = raw
        ok = await raw.basic_consume(self._queue.name, self._deliver, no_ack=False)
        self._tag = ok.consumer_tag

    async def _deliver(self, raw: DeliveredMessage) -> None:
        await self._on_message(Delivery(raw))

    async def _prepare(self, retrying: bool) -> None:
        """Before consuming again: the queue declared again if it may be gone, then the
        runtime's own step (the cancels missed while away)."""
        if retrying or self._queue_gone:
            await self._redeclare()
            self._queue_gone = False
        if self._before_restore is not None:
            await self._before_restore()

    def _cancelled_by_broker(self, frame: Basic.Cancel) -> None:
        if frame.consumer_tag != self._tag:
            return
        log.warning("the broker cancelled the subscription (its queue deleted?); consuming again")
        self._tag = None
        self._queue_gone = True
        self._kept.lost()

    async def _cancel(self, raw: RawChannel) -> None:
        """basic.cancel, waiting for cancel-ok: aiormq drops deliveries for a tag it no longer
        knows, and the broker sends none after it."""
        tag, self._tag = self._tag, None
        if tag is not None:
            await raw.basic_cancel(tag, nowait=False)
