"""One pool's dead-letter queue, for operators: look, replay, purge (`rpcfleet dead`, and the
gateway's `/v1/pools/{pool}/dead` routes behind the fleet page).

Looking never removes anything, and spends none of a dead letter's deliveries. A quorum queue
counts every return of a message against its delivery limit (20 by default from RabbitMQ 4.0,
and before 4.3 every return counts), and drops it past the limit: a look that took the messages
and handed them back would lose each dead letter after its twentieth look. So what a session
looked at and did not settle is put back as a new message, a copy sent to the back of the same
queue and confirmed before the original is acked. A session takes the whole queue up to its scan
limit, so the order is kept whenever the queue holds no more than that; past it, successive
looks walk around the queue (each dead letter carries its `dead_at_ms`).

A replay is published `mandatory` with a publisher confirm before its dead letter is acked, and
a purge acks only what it was asked to remove, so a crash at any point loses nothing (at worst a
dead letter is there twice, or a replayed request is also still in the dead-letter queue).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from protocol import names
from protocol.clock import now_ms
from protocol.dead import DeadLetter, replay_headers
from protocol.requests import expiration_ms
from transport.cluster import connect_cluster
from transport.copies import send_copy
from transport.publishing import Confirmed
from transport.settling import Decision, settle

log = logging.getLogger("rpcfleet.transport")

SCAN_MAX = 1000  # dead letters a session takes at most (a look keeps the order up to this many)


@dataclass(eq=False)  # one held delivery is itself, not any equal-looking one
class Held:
    """A dead letter taken from the queue and not yet settled."""

    letter: DeadLetter
    message: AbstractIncomingMessage


class ReplayRefused(Exception):
    """The dead letter cannot be replayed (see `DeadLetter.replay_refusal`) or no pool took it."""


class DeadLetterQueue:
    def __init__(self, channel: AbstractChannel, pool: str) -> None:
        self.channel = channel
        self.pool = pool
        self.queue_name = names.dead_queue(pool)
        self._unsettled: list[Held] = []

    async def take(self, limit: int = SCAN_MAX) -> list[Held]:
        """Up to `limit` dead letters, oldest first, held until settled or the session ends."""
        queue = await self.channel.declare_queue(self.queue_name, passive=True)
        held: list[Held] = []
        while len(held) < limit:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            held.append(Held(_read(message), message))
        self._unsettled.extend(held)
        return held

    async def replay(self, item: Held, timeout: float | None) -> None:
        """Publish the request again to its pool, afresh (attempt 1, a new deadline or none),
        and remove the dead letter once the broker has confirmed the replay."""
        refusal = item.letter.replay_refusal
        if refusal is not None:
            raise ReplayRefused(refusal)
        message = item.message
        now = now_ms()
        deadline = now + int(timeout * 1000) if timeout is not None else None
        left = expiration_ms(deadline, now)
        sent = await send_copy(
            self.channel, message, exchange=names.EXCHANGE, routing_key=str(message.type),
            headers=replay_headers(message.headers, deadline),
            expiration=str(left) if left is not None else None)
        if sent is Confirmed.NACKED:
            raise ReplayRefused("the pool's queue refused it (full)")
        if sent is Confirmed.RETURNED:
            raise ReplayRefused(f"no pool serves the method {message.type!r} now")
        if sent is Confirmed.UNCONFIRMED:
            raise ReplayRefused("the broker did not confirm the copy in time (down or blocked): "
                                "the dead letter stays; the pool may yet get the copy, so look "
                                "before replaying it again")
        await self._settle(item)

    async def purge(self, item: Held) -> None:
        await self._settle(item)

    async def put_back(self) -> int:
        """What this session took and did not settle goes back to the queue, in order, each as
        a new message (all sent at once, each original acked once its copy is confirmed): no
        delivery of it is spent. What the broker would not take stays held and returns with
        the channel. Returns how many went back."""
        items, self._unsettled = self._unsettled, []
        outcomes = await asyncio.gather(*(
            send_copy(self.channel, item.message, exchange="", routing_key=self.queue_name)
            for item in items))
        for item, sent in zip(items, outcomes, strict=True):
            if sent is Confirmed.ACKED:
                await settle(item.message, Decision.ACK)
            else:
                self._unsettled.append(item)
        if self._unsettled:
            log.warning("%s would not take back %d dead letters: they return with the channel, "
                        "which counts a delivery", self.queue_name, len(self._unsettled))
        return len(items) - len(self._unsettled)

    async def _settle(self, item: Held) -> None:
        await settle(item.message, Decision.ACK)
        self._unsettled.remove(item)


@asynccontextmanager
async def dead_letter_queue(amqp_url: str, pool: str) -> AsyncIterator[DeadLetterQueue]:
    """A session on one pool's dead letters over a connection of its own."""
    connection = await connect_cluster(amqp_url)  # the first node that answers
    async with connection, dead_letter_session(connection, pool) as queue:
        yield queue


@asynccontextmanager
async def dead_letter_session(connection: AbstractConnection,
                              pool: str) -> AsyncIterator[DeadLetterQueue]:
    """A session on one pool's dead letters, on a channel of its own: what it did not settle
    goes back to the queue as it ends (`DeadLetterQueue.put_back`)."""
    channel = await connection.channel(publisher_confirms=True)
    try:
        queue = DeadLetterQueue(channel, pool)
        try:
            yield queue
        finally:
            try:
                await queue.put_back()
            except Exception as exc:  # the channel or the broker went: what was held returns
                log.warning("could not put dead letters back in %s (%r); they return with the "
                            "channel", queue.queue_name, exc)
    finally:
        await channel.close()


def _read(message: AbstractIncomingMessage) -> DeadLetter:
    return DeadLetter.read(correlation_id=message.correlation_id, method=message.type,
                           reply_to=message.reply_to, headers=dict(message.headers or {}),
                           size=len(message.body))
