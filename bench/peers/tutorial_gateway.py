"""A minimal FastAPI + aio-pika gateway written the way RabbitMQ's RPC tutorial teaches: a dict of
futures by correlation id, default exchange, JSON bodies; replies on direct reply-to
(BENCH_REPLY=direct, the default) or on an exclusive server-named callback queue
(BENCH_REPLY=queue, the tutorial's first version).

    uvicorn bench.peers.tutorial_gateway:app     (env BENCH_AMQP_URL, BENCH_REPLY)
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

QUEUES = {"echo": "rpc_queue", "burn": "rpc_burn"}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    connection = await aio_pika.connect_robust(os.environ["BENCH_AMQP_URL"])
    channel = await connection.channel()
    futures: dict[str, asyncio.Future[bytes]] = {}

    async def on_response(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        future = futures.pop(message.correlation_id or "", None)
        if future is not None:
            future.set_result(message.body)

    if os.environ.get("BENCH_REPLY", "direct") == "queue":
        reply_queue = await channel.declare_queue(exclusive=True)
    else:
        reply_queue = await channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
    await reply_queue.consume(on_response, no_ack=True)
    for queue in QUEUES.values():
        await channel.declare_queue(queue)
    app.state.channel, app.state.futures = channel, futures
    app.state.reply_to = reply_queue.name
    yield
    await connection.close()


app = FastAPI(lifespan=lifespan)


async def call(request: Request, method: str) -> Any:
    params = await request.json()
    correlation_id = str(uuid.uuid4())
    future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    request.app.state.futures[correlation_id] = future
    await request.app.state.channel.default_exchange.publish(
        aio_pika.Message(json.dumps(params).encode(), content_type="application/json",
                         correlation_id=correlation_id, reply_to=request.app.state.reply_to),
        routing_key=QUEUES[method],
    )
    body = await asyncio.wait_for(future, timeout=30)
    return JSONResponse({"result": json.loads(body)})


@app.post("/echo")
async def echo(request: Request) -> Any:
    return await call(request, "echo")


@app.post("/burn")
async def burn(request: Request) -> Any:
    return await call(request, "burn")
