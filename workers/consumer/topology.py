"""Declare the AMQP topology a pool needs (SPEC: AMQP topology). Idempotent, same arguments
everywhere: a queue redeclared with other arguments closes the channel (406)."""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from protocol import names
from protocol.queues import QueueType, durable_queue_arguments, pool_queue_arguments


@dataclass
class PoolTopology:
    requests: AbstractExchange
    dead_letters: AbstractExchange
    events: AbstractExchange
    control: AbstractExchange
    queue: AbstractQueue


async def declare_shared_exchanges(
    channel: AbstractChannel,
) -> tuple[AbstractExchange, AbstractExchange, AbstractExchange, AbstractExchange]:
    direct, topic = aio_pika.ExchangeType.DIRECT, aio_pika.ExchangeType.TOPIC
    requests = await channel.declare_exchange(names.EXCHANGE, direct, durable=True)
    dead = await channel.declare_exchange(names.DEAD_LETTER_EXCHANGE, direct, durable=True)
    events = await channel.declare_exchange(names.EVENTS_EXCHANGE, topic, durable=True)
    control = await channel.declare_exchange(names.CONTROL_EXCHANGE, topic, durable=True)
    return requests, dead, events, control


async def declare_pool(
    channel: AbstractChannel,
    pool: str,
    methods: list[str],
    queue_type: QueueType,
) -> PoolTopology:
    requests, dead, events, control = await declare_shared_exchanges(channel)
    queue = await channel.declare_queue(
        names.pool_queue(pool), durable=True, arguments=pool_queue_arguments(pool, queue_type)
    )
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
    return PoolTopology(requests, dead, events, control, queue)
