"""FastStream's RabbitMQ request-reply (`broker.request`, direct reply-to) behind FastAPI, the
broker connected in the app's lifespan, as its documentation pairs them.

    uvicorn bench.peers.faststream_peer:app      the gateway   (env BENCH_AMQP_URL)
    python -m bench.peers.faststream_peer        the worker, prefetch 1
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from faststream import FastStream
from faststream.rabbit import Channel, RabbitBroker

from bench.peers import work

URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

broker = RabbitBroker(URL)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await broker.start()
    yield
    await broker.stop()


app = FastAPI(lifespan=lifespan)


async def call(request: Request, queue: str) -> dict[str, Any]:
    response = await broker.request(await request.json(), queue=queue, timeout=30)
    return {"result": await response.decode()}


@app.post("/echo")
async def echo(request: Request) -> dict[str, Any]:
    return await call(request, "fs_echo")


@app.post("/burn")
async def burn(request: Request) -> dict[str, Any]:
    return await call(request, "fs_burn")


worker_broker = RabbitBroker(URL, default_channel=Channel(prefetch_count=1))


@worker_broker.subscriber("fs_echo")
async def echo_handler(params: dict[str, Any]) -> dict[str, Any]:
    return work.echo(params)


@worker_broker.subscriber("fs_burn")
async def burn_handler(params: dict[str, Any]) -> int:
    return work.burn(params)


if __name__ == "__main__":
    asyncio.run(FastStream(worker_broker).run())
