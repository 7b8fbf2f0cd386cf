"""Declare the AMQP topology a pool needs (SPEC: AMQP topology). Idempotent, same arguments
everywhere: a queue redeclared with other arguments closes the channel (406)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from protocol import names
from protocol.queues import (
    API_PRIORITIES,
    JOB_PRIORITY_LEVELS,
    LEGACY_MAX_PRIORITY,
    DeadLetterStrategy,
    QueueType,
    durable_queue_arguments,
    pool_queue_arguments,
)
from transport.topology import declare_exchanges
from workers.consumer.claims import claim

log = logging.getLogger("rpcfleet.worker")
REOPEN_WAIT_S = 10.0  # a robust channel reopens in milliseconds; past this, something is wrong


@dataclass
class PoolTopology:
    requests: AbstractExchange
    dead_letters: AbstractExchange
    events: AbstractExchange
    control: AbstractExchange
    queue: AbstractQueue
    claims: list[AbstractQueue]  # one per method: held by a consumer while this one serves
    # The pool queue's x-max-priority as the broker has it (a classic queue declared earlier
    # keeps its own); None on quorum queues, or when not found out.
    max_priority: int | None = None


@dataclass(frozen=True)
class QueueArguments:
    """What decides the pool queue's arguments (see protocol.queues.pool_queue_arguments)."""

    queue_type: QueueType
    delivery_limit: int | None = None
    dead_letter_strategy: DeadLetterStrategy = "at-most-once"
    priority_levels: int = JOB_PRIORITY_LEVELS


async def declare_pool(
    channel: AbstractChannel,
    pool: str,
    methods: list[str],
    arguments: QueueArguments,
) -> PoolTopology:
    queue_type = arguments.queue_type
    claims = await claim(channel, pool, methods)  # before anything is bound: MethodClash
    exchanges = await declare_exchanges(channel)
    name = names.pool_queue(pool)
    wanted = pool_queue_arguments(pool, queue_type, arguments.delivery_limit,
                                  arguments.dead_letter_strategy, arguments.priority_levels)
    max_priority: int | None = wanted.get("x-max-priority")
    try:
        queue = await channel.declare_queue(name, durable=True, arguments=wanted)
    except aio_pika.exceptions.ChannelPreconditionFailed as exc:
        # The queue exists with other arguments (declared by an earlier version, or with other
        # settings): serve it as it is rather than not at all.
        max_priority = await _existing_max_priority(channel, name, wanted)
        if max_priority is None:
            log.warning("%s exists with other arguments than these settings give (%s); using "
                        "it as it is. To change them, drain and delete the queue.", name, exc)
        else:  # only its priority levels differ
            log.info("%s was declared with x-max-priority %d (kept: a queue's arguments are "
                     "fixed when it is first declared); jobs map onto its levels", name,
                     max_priority)
        queue = await _passive(channel, name)
    requests, dead = exchanges[names.EXCHANGE], exchanges[names.DEAD_LETTER_EXCHANGE]
    for method in methods:
        await queue.bind(requests, routing_key=method)
    shared = durable_queue_arguments(queue_type)
    dead_queue = await channel.declare_queue(names.dead_queue(pool), durable=True,
                                             arguments=shared)
    await dead_queue.bind(dead, routing_key=pool)
    dead_events = await channel.declare_queue(names.DEAD_EVENTS_QUEUE, durable=True,
                                              arguments=shared)
    await dead_events.bind(dead, routing_key=pool)
    # Replies of jobs must never be dropped for want of a queue, even before a gateway starts.
    await channel.declare_queue(names.REPLIES_QUEUE, durable=True, arguments=shared)
    return PoolTopology(requests, dead, exchanges[names.EVENTS_EXCHANGE],
                        exchanges[names.CONTROL_EXCHANGE], queue, claims, max_priority)


async def _existing_max_priority(channel: AbstractChannel, name: str,
                                 wanted: dict[str, Any]) -> int | None:
    """The x-max-priority (1-10) a classic queue that refused `wanted` was declared with, found
    by declaring it with each other value on throwaway channels (AMQP cannot read a queue's
    arguments; the broker refuses a declaration whose arguments differ). The one rpcfleet used
    before 1.2 (10) is tried first. None: no value matches (other arguments differ too)."""
    asked = wanted.get("x-max-priority")
    if not isinstance(asked, int):
        return None
    connection = (await channel.get_underlay_channel()).connection
    candidates: list[int] = [LEGACY_MAX_PRIORITY, *range(1, API_PRIORITIES)]
    for candidate in (c for c in candidates if c != asked):
        probe = await connection.channel()
        try:
            await probe.queue_declare(name, durable=True,
                                      arguments={**wanted, "x-max-priority": candidate})
        except aiormq.exceptions.ChannelPreconditionFailed:
            continue  # the broker closed that channel
        await probe.close()
        return candidate
    return None


async def _passive(channel: AbstractChannel, name: str) -> AbstractQueue:
    """The queue as it is, once the channel the broker closed for the mismatch has reopened
    (aio-pika's robust channel reopens it by itself, within moments)."""
    deadline = asyncio.get_running_loop().time() + REOPEN_WAIT_S
    while True:
        try:
            return await channel.declare_queue(name, passive=True)
        except aiormq.exceptions.ChannelInvalidStateError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)
