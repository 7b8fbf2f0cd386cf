"""The private broker the suite stands on: real AMQP handshake, isolated vhosts."""

import asyncio

import aio_pika

from tests.support.rabbit import Vhost


def test_a_fresh_vhost_accepts_an_amqp_connection_and_counts_queues_live(vhost: Vhost) -> None:
    async def declare() -> None:
        connection = await aio_pika.connect(vhost.amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue("probe", durable=True)
            await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key=queue.name)

    asyncio.run(declare())
    assert vhost.queue_counts("probe") == (1, 0, 0)


def test_the_broker_rpcfleet_starts_makes_classic_queues_version_2(vhost: Vhost) -> None:
    """`classic_queue.default_version = 2` (docs/operations.md): persistent jobs cost less."""

    async def declare() -> None:
        connection = await aio_pika.connect(vhost.amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue("replies-like", durable=True)

    asyncio.run(declare())
    status = vhost.broker.ctl("eval", "[rabbit_amqqueue:info(Q, [backing_queue_status]) || Q <- "
                              f"rabbit_amqqueue:list(<<\"{vhost.name}\">>)].")
    assert "{version,2}" in status.replace(" ", "")
