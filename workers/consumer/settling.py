"""How a delivery leaves (SPEC: worker semantics): the one place it is settled.

The copies that replace a delivery (a dead letter, a retry) and a job's reply are confirmed by
the broker first, then the delivery is acked exactly once; a sync reply travels ahead of the ack
in one write on the request's own channel (see `workers.consumer.outgoing`). `Delivery` itself
refuses a second settlement, so a double ack (which closes the channel with PRECONDITION_FAILED)
cannot be written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiormq
from aio_pika.abc import AbstractRobustChannel
from pamqp.commands import Basic as _Basic
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
)

from protocol import DeadReason, backoff, names
from protocol.clock import now_ms
from protocol.dead import dead_letter_headers
from protocol.queues import durable_queue_arguments
from protocol.requests import expiration_ms, read_deadline, start_by
from transport.confirms import ConfirmingChannel
from transport.copies import copied_properties
from transport.publishing import Confirmed
from transport.settling import Decision
from transport.settling import settle as settle_once
from workers.consumer import outgoing
from workers.consumer.autoprefetch import AutoPrefetch
from workers.consumer.delivery import Delivery
from workers.consumer.outcome import Outcome
from workers.consumer.state import ConsumerSetup, Counters
from workers.consumer.strays import StrayReplies
from workers.consumer.topology import PoolTopology

log = logging.getLogger("rpcfleet.worker")

# A nacked job reply (the replies queue full under reject-publish, a broker hiccup) is tried
# again for this long before the request goes back to its queue: a handler that succeeded is
# never recorded failed because its answer could not be stored at once.
REPLY_RETRY_S = 30.0
# How long one publish waits to be written and confirmed. aiormq waits without a bound for a
# frame to be written, and a frame queued on a connection that has just died is never written:
# the settle (and the handler slot it holds) would wait forever, and every delivery behind it
# with it. Past this, a reply is published again on the channel as it is now (a reconnect gives
# a new one); a copy's settle fails and the delivery, unacked, is redelivered.
CONFIRM_TIMEOUT_S = 10.0

class CopyNotConfirmed(RuntimeError):
    """The broker did not take a dead-letter or retry copy: the request stays unacked."""


class ReplyNotConfirmed(RuntimeError):
    """The broker did not ack a reply: the request stays unacked, to be redelivered."""


@dataclass(frozen=True)
class Settle:
    """How a delivery leaves, in this order: a dead-letter copy, a retry copy (both confirmed),
    the reply (to whoever asked, when anyone did), then one ack."""

    attempt: int
    reply: Outcome | None = None
    dead: tuple[DeadReason, str] | None = None
    retry: bool = False  # republish it as `attempt`: a redelivery, counted


class Settler:
    def __init__(self, setup: ConsumerSetup, confirming: ConfirmingChannel,
                 topology: PoolTopology, counters: Counters, measure: AutoPrefetch,
                 strays: StrayReplies) -> None:
        self.setup = setup
        # Dead-letter and retry copies, job replies: confirmed, on a channel replaced when a
        # quorum queue stalls it (transport.confirms).
        self.confirming = confirming
        # Sync replies whose caller may have gone with a broker node (workers.consumer.strays).
        self.strays = strays
        self.topology = topology
        self.counters = counters
        self.measure = measure  # a job reply's confirm is a broker round trip: auto prefetch
        self.worker = setup.worker_id
        # Before the last delivery a consumer takes is acked (runtime: a recycle): its
        # subscription is cancelled first, on the delivery's own channel, so the ack's freed
        # prefetch slot is not filled with a delivery for a consumer about to leave.
        self.before_last_ack: Callable[[], Awaitable[None]] | None = None

    @property
    def channel(self) -> AbstractRobustChannel:
        channel = self.confirming.current
        assert channel is not None  # attached before the first delivery
        return channel

    async def settle(self, message: Delivery, settle: Settle) -> None:
        if message.last and self.before_last_ack is not None:
            await self.before_last_ack()
        pool = self.setup.pool.name
        if settle.dead is not None:
            reason, detail = settle.dead
            log.warning("dead-lettering %s (%s): %s", message.correlation_id, reason, detail)
            await self._copy(message, names.DEAD_LETTER_EXCHANGE, pool, names.dead_queue(pool),
                             # kept for inspection and replay, not to expire again
                             # the attempt it was: a gateway counts starts by it
                             headers=dead_letter_headers(
                                 {**message.headers, names.HEADER_ATTEMPT: settle.attempt},
                                 pool, reason, detail, now_ms()))
        if settle.retry:
            left = expiration_ms(start_by(read_deadline(message.headers), settle.attempt,
                                          message.reply_to), now_ms())
            await self._copy(message, "", names.pool_queue(pool), names.pool_queue(pool),
                             headers={**message.headers, names.HEADER_ATTEMPT: settle.attempt},
                             expiration=str(left) if left is not None else None)
        outcome = settle.reply
        if outcome is not None:
            self._count(outcome)
        if outcome is not None and message.reply_to:
            properties = outgoing.reply_properties(message, self.worker, settle.attempt, outcome)
            if not names.is_durable_reply_to(message.reply_to):
                if self.strays.is_stray(message):  # published before this session: aside
                    await self.strays.send(message.reply_to, outcome.body, properties)
                    await settle_once(message, Decision.ACK)
                    return
                # A sync reply: transient, to direct reply-to, in one write with the ack after it.
                message.settling()
                await outgoing.reply_then_ack(message.channel, body=outcome.body,
                                          reply_to=message.reply_to, properties=properties,
                                          delivery_tag=message.delivery_tag)
                return
            await self._reply_confirmed(message.reply_to, outcome.body, properties)
        await settle_once(message, Decision.ACK)

    async def _reply_confirmed(self, reply_to: str, body: bytes,
                               properties: _Basic.Properties) -> None:
        """A job's reply is its only record (persistent, to a durable queue): the request is
        acked only after the broker confirmed it; a nack is tried again with backoff. The first
        try goes without the retry machinery (about 30 us a reply, 5 % of a job's worker CPU):
        it is the one that nearly always succeeds."""
        try:
            await self._reply_once(reply_to, body, properties)
            return
        except ReplyNotConfirmed as exc:
            log.warning("the reply to %s was not confirmed (attempt 1: %s); trying again",
                        properties.correlation_id, exc)
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(REPLY_RETRY_S), reraise=True,
            wait=backoff.wait(0.05, 2.0),
            retry=retry_if_exception_type(ReplyNotConfirmed),
            before_sleep=lambda state: log.warning(
                "the reply to %s was not confirmed (attempt %s: %s); trying again",
                properties.correlation_id, state.attempt_number + 1,
                state.outcome.exception() if state.outcome else None),
        ):
            with attempt:
                await self._reply_once(reply_to, body, properties)

    async def _reply_once(self, reply_to: str, body: bytes,
                          properties: _Basic.Properties) -> None:
        sent = time.perf_counter()
        # Mandatory to rpcfleet's own reply queues: one that does not exist (yet) comes back
        # instead of vanishing, and is declared (as its gateways declare it).
        ours = names.is_job_reply_to(reply_to)
        try:
            published = await self.confirming.publish(body, routing_key=reply_to, target=reply_to,
                                                      properties=properties, mandatory=ours,
                                                      timeout=CONFIRM_TIMEOUT_S)
        except (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError,
                ConnectionError, asyncio.CancelledError) as exc:
            task = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
                raise  # this settle itself is being cancelled
            # The channel closed under the publish (reopened by aio-pika, or by the judge for
            # another target): try again on the channel as it is now.
            raise ReplyNotConfirmed(f"reply to {properties.correlation_id}: its channel closed "
                                    f"({type(exc).__name__}: {exc})") from None
        confirmed = published.confirmed
        if not published.current and confirmed is not Confirmed.ACKED:
            # Replaced meanwhile: what the old channel did says nothing of the new one.
            raise ReplyNotConfirmed(f"reply to {properties.correlation_id}: {confirmed.value} "
                                    "on a channel replaced since")
        if confirmed is Confirmed.NACKED:
            verdict = await self.confirming.stalled(reply_to, "nacked", CONFIRM_TIMEOUT_S)
            raise ReplyNotConfirmed(f"reply to {properties.correlation_id}: nacked "
                                    f"({verdict.value})")
        if confirmed is Confirmed.UNCONFIRMED:
            verdict = await self.confirming.stalled(reply_to, "never confirmed",
                                                    CONFIRM_TIMEOUT_S)
            raise ReplyNotConfirmed(f"reply to {properties.correlation_id}: no confirm within "
                                    f"{CONFIRM_TIMEOUT_S} s ({verdict.value})")
        if confirmed is Confirmed.RETURNED:  # only rpcfleet's own reply queues go mandatory
            await self.channel.declare_queue(
                reply_to, durable=True,
                arguments=durable_queue_arguments(self.setup.settings.queues))
            raise ReplyNotConfirmed(f"{reply_to} did not exist; declared it")
        self.measure.observe_round_trip(time.perf_counter() - sent)

    async def _copy(self, message: Delivery, exchange: str, routing_key: str, target: str,
                    **changes: Any) -> None:
        """A copy of `message` that replaces it (transport.copies), confirmed before the
        delivery is acked; refused or unconfirmed, it raises and the delivery stays unacked. A
        confirm counts for the judge of `target` (a queue); a channel the judge finds stalled
        is replaced first (transport.confirms)."""
        try:
            published = await self.confirming.publish(
                message.body, exchange=exchange, routing_key=routing_key, target=target,
                properties=copied_properties(message, **changes), timeout=CONFIRM_TIMEOUT_S)
        except aiormq.exceptions.ChannelInvalidStateError as exc:
            raise CopyNotConfirmed(f"the copy of {message.correlation_id} for {target}: its "
                                   f"channel is closed ({exc})") from None
        confirmed, current = published.confirmed, published.current
        if confirmed is Confirmed.ACKED:
            return
        why = "nacked" if confirmed is Confirmed.NACKED else "never confirmed"
        if current:
            why = f"{why} ({(await self.confirming.stalled(target, why, CONFIRM_TIMEOUT_S)).value})"
        raise CopyNotConfirmed(f"the copy of {message.correlation_id} for {target}: {why}")

    def _count(self, outcome: Outcome) -> None:
        self.counters.processed += 1
        if not outcome.ok and not outcome.meant:  # a CallError is the application's answer
            self.counters.failed += 1
