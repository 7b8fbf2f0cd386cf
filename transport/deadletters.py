"""One pool's dead-letter queue, for operators: look, replay, purge (`rpcfleet dead`, and the
gateway's `/v1/pools/{pool}/dead` routes behind the fleet page).

Looking never removes anything: the messages are taken unacked and go back to the queue, in their
order, when the session closes. A replay is published `mandatory` with a publisher confirm before
its dead letter is acked, and a purge acks only what it was asked to remove, so a crash at any
point loses nothing (at worst a replayed request is also still in the dead-letter queue).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from pamqp.commands import Basic

from protocol import names
from protocol.clock import now_ms
from protocol.dead import DeadLetter, replay_headers
from transport.cluster import node_urls
from transport.copies import copied_properties


@dataclass
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

    async def take(self, limit: int) -> list[Held]:
        """Up to `limit` dead letters, oldest first, held until acked or the session ends."""
        queue = await self.channel.declare_queue(names.dead_queue(self.pool), passive=True)
        held: list[Held] = []
        while len(held) < limit:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            held.append(Held(_read(message), message))
        return held

    async def replay(self, item: Held, timeout: float | None) -> None:
        """Publish the request again to its pool, afresh (attempt 1, a new deadline or none),
        and remove the dead letter once the broker has confirmed the replay."""
        refusal = item.letter.replay_refusal
        if refusal is not None:
            raise ReplayRefused(refusal)
        message = item.message
        deadline = now_ms() + int(timeout * 1000) if timeout is not None else None
        properties = copied_properties(
            message, headers=replay_headers(message.headers, deadline),
            expiration=(str(min(int(timeout * 1000), names.MAX_EXPIRATION_MS))
                        if timeout is not None else None))
        underlay = await self.channel.get_underlay_channel()
        try:
            confirm = await underlay.basic_publish(
                message.body, exchange=names.EXCHANGE, routing_key=str(message.type),
                properties=properties, mandatory=True)
        except aiormq.exceptions.DeliveryError as exc:
            raise ReplayRefused("the pool's queue refused it (full)") from exc
        if not isinstance(confirm, Basic.Ack):
            raise ReplayRefused(f"no pool serves the method {message.type!r} now")
        await message.ack()

    async def purge(self, item: Held) -> None:
        await item.message.ack()


@asynccontextmanager
async def dead_letter_queue(amqp_url: str, pool: str) -> AsyncIterator[DeadLetterQueue]:
    """A session on one pool's dead letters over a connection of its own."""
    connection = await aio_pika.connect(node_urls(amqp_url)[0])
    async with connection, dead_letter_session(connection, pool) as queue:
        yield queue


@asynccontextmanager
async def dead_letter_session(connection: AbstractConnection,
                              pool: str) -> AsyncIterator[DeadLetterQueue]:
    """A session on one pool's dead letters, on a channel of its own: what it did not settle
    returns to the queue, in order, when the channel closes."""
    channel = await connection.channel(publisher_confirms=True)
    try:
        yield DeadLetterQueue(channel, pool)
    finally:
        await channel.close()


def _read(message: AbstractIncomingMessage) -> DeadLetter:
    return DeadLetter.read(correlation_id=message.correlation_id, method=message.type,
                           reply_to=message.reply_to, headers=dict(message.headers or {}),
                           size=len(message.body))
