"""aio-pika's own RPC pattern (`aio_pika.patterns.JsonRPC`: JSON, not the default pickle)
behind FastAPI, as its documentation shows it.

    uvicorn bench.peers.aiopika_rpc:app          the gateway   (env BENCH_AMQP_URL)
    python -m bench.peers.aiopika_rpc            the worker, prefetch 1
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
from aio_pika.patterns import JsonRPC
from fastapi import FastAPI, Request

from bench.peers import work


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    connection = await aio_pika.connect_robust(os.environ["BENCH_AMQP_URL"])
    channel = await connection.channel()
    app.state.rpc = await JsonRPC.create(channel)
    yield
    await connection.close()


app = FastAPI(lifespan=lifespan)


@app.post("/echo")
async def echo(request: Request) -> dict[str, Any]:
    return {"result": await request.app.state.rpc.call("echo",
                                                       kwargs={"params": await request.json()})}


@app.post("/burn")
async def burn(request: Request) -> dict[str, Any]:
    return {"result": await request.app.state.rpc.call("burn",
                                                       kwargs={"params": await request.json()})}


async def serve() -> None:
    connection = await aio_pika.connect_robust(os.environ["BENCH_AMQP_URL"])
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1)
    rpc = await JsonRPC.create(channel)

    async def echo_handler(*, params: dict[str, Any]) -> Any:
        return work.echo(params)

    async def burn_handler(*, params: dict[str, Any]) -> Any:
        return work.burn(params)

    await rpc.register("echo", echo_handler, auto_delete=True)
    await rpc.register("burn", burn_handler, auto_delete=True)
    await asyncio.Future()  # serve until killed


if __name__ == "__main__":
    asyncio.run(serve())
