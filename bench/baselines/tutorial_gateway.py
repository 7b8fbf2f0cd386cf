"""A minimal FastAPI + aio-pika gateway written the way RabbitMQ's RPC tutorial teaches:
direct reply-to, a dict of futures by correlation id, default exchange, JSON bodies.

    uvicorn bench.baselines.tutorial_gateway:app     (env BENCH_AMQP_URL)
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

QUEUE = "rpc_queue"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    connection = await aio_pika.connect_robust(os.environ["BENCH_AMQP_URL"])
    channel = await connection.channel()
    futures: dict[str, asyncio.Future[bytes]] = {}

    async def on_response(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        future = futures.pop(message.correlation_id or "", None)
        if future is not None:
            future.set_result(message.body)

    reply_queue = await channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
    await reply_queue.consume(on_response, no_ack=True)
    await channel.declare_queue(QUEUE)
    app.state.channel, app.state.futures = channel, futures
    yield
    await connection.close()


app = FastAPI(lifespan=lifespan)


@app.post("/echo")
async def echo(request: Request) -> Any:
    params = await request.json()
    correlation_id = str(uuid.uuid4())
    future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    request.app.state.futures[correlation_id] = future
    await request.app.state.channel.default_exchange.publish(
        aio_pika.Message(json.dumps(params).encode(), content_type="application/json",
                         correlation_id=correlation_id, reply_to="amq.rabbitmq.reply-to"),
        routing_key=QUEUE,
    )
    body = await asyncio.wait_for(future, timeout=30)
    return JSONResponse({"result": json.loads(body)})
