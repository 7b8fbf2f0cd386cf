"""FastStream's RabbitMQ request-reply (`broker.request`, direct reply-to) behind FastAPI
through its own FastAPI router, as its documentation pairs them.

    uvicorn bench.peers.faststream_peer:app      the gateway   (env BENCH_AMQP_URL)
    python -m bench.peers.faststream_peer        the worker, one message at a time
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import FastAPI, Request
from faststream import FastStream
from faststream.rabbit import RabbitBroker
from faststream.rabbit.fastapi import RabbitRouter

from bench.peers import work

URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

router = RabbitRouter(URL)
app = FastAPI()


async def call(request: Request, queue: str) -> dict[str, Any]:
    response = await router.broker.request(await request.json(), queue=queue, timeout=30)
    return {"result": await response.decode()}


@router.post("/echo")
async def echo(request: Request) -> dict[str, Any]:
    return await call(request, "fs_echo")


@router.post("/burn")
async def burn(request: Request) -> dict[str, Any]:
    return await call(request, "fs_burn")


app.include_router(router)

worker_broker = RabbitBroker(URL, max_consumers=1)  # prefetch 1


@worker_broker.subscriber("fs_echo")
async def echo_handler(params: dict[str, Any]) -> dict[str, Any]:
    return work.echo(params)


@worker_broker.subscriber("fs_burn")
async def burn_handler(params: dict[str, Any]) -> int:
    return work.burn(params)


if __name__ == "__main__":
    asyncio.run(FastStream(worker_broker).run())
