"""The RPC tutorial's server in aio-pika: prefetch 1, reply on the default exchange, then ack.

    python -m bench.peers.tutorial_worker     (env BENCH_AMQP_URL)
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from typing import Any

import aio_pika

from bench.peers import work

HANDLERS: dict[str, Callable[[Any], Any]] = {"rpc_queue": work.echo, "rpc_burn": work.burn}


async def main() -> None:
    connection = await aio_pika.connect_robust(os.environ["BENCH_AMQP_URL"])
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1)

    for name, handler in HANDLERS.items():
        async def on_request(message: aio_pika.abc.AbstractIncomingMessage,
                             handler: Callable[[Any], Any] = handler) -> None:
            async with message.process():
                result = handler(json.loads(message.body))
                await channel.default_exchange.publish(
                    aio_pika.Message(json.dumps(result).encode(),
                                     correlation_id=message.correlation_id),
                    routing_key=message.reply_to or "",
                )

        queue = await channel.declare_queue(name)
        await queue.consume(on_request)
    await asyncio.Future()  # serve until killed


if __name__ == "__main__":
    asyncio.run(main())
