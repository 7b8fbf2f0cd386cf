"""FastAPI + Celery as their tutorials pair them: RabbitMQ as the broker, `rpc://` results,
publisher confirms on (`confirm_publish`, the durability rpcfleet's 202 has), the worker at
`--prefetch-multiplier 1`. A sync call waits on `.get()` in FastAPI's thread pool; a job is
`.delay()` and a 202 with the task id.

    uvicorn bench.peers.celery_peer:app                                    the gateway
    celery -A bench.peers.celery_peer:celery worker --prefetch-multiplier 1 the worker
    (env BENCH_AMQP_URL)
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from celery import Celery
from fastapi import Body, FastAPI
from fastapi.responses import JSONResponse

from bench.peers import work

celery = Celery("peers", broker=os.environ.get("BENCH_AMQP_URL", "amqp://"), backend="rpc://")
celery.conf.update(broker_transport_options={"confirm_publish": True},
                   worker_prefetch_multiplier=1, task_serializer="json",
                   result_serializer="json", accept_content=["json"],
                   broker_connection_retry_on_startup=True)


@celery.task(name="echo")
def echo_task(params: dict[str, Any]) -> dict[str, Any]:
    return work.echo(params)


@celery.task(name="burn")
def burn_task(params: dict[str, Any]) -> int:
    return work.burn(params)


app = FastAPI()


@app.post("/echo")
def echo(params: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    return {"result": echo_task.delay(params).get(timeout=30)}


@app.post("/burn")
def burn(params: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    return {"result": burn_task.delay(params).get(timeout=30)}


@app.post("/jobs")
def submit(params: Annotated[dict[str, Any], Body()]) -> JSONResponse:
    task = echo_task.delay(params)
    return JSONResponse({"id": task.id}, status_code=202)
