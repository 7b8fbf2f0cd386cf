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
