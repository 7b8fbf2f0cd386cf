"""The RPC tutorial's server in aio-pika: prefetch 1, reply on the default exchange, then ack.

    python -m bench.baselines.tutorial_worker     (env BENCH_AMQP_URL)
"""

from __future__ import annotations

import asyncio
import json
import os

import aio_pika

QUEUE = "rpc_queue"


async def main() -> None:
    connection = await aio_pika.connect_robust(os.environ["BENCH_AMQP_URL"])
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1)
    queue = await channel.declare_queue(QUEUE)
    async with queue.iterator() as messages:
        async for message in messages:
            async with message.process():
                result = json.loads(message.body)
                await channel.default_exchange.publish(
                    aio_pika.Message(json.dumps(result).encode(),
                                     correlation_id=message.correlation_id),
                    routing_key=message.reply_to or "",
                )


if __name__ == "__main__":
    asyncio.run(main())
