"""POST /v1/rpc/{method}: a synchronous-feeling call. The hot path: no pydantic models, the
params bytes go to the broker as they came, the reply is re-framed with orjson."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Query, Request, Response

from gateway.errors import BadRequest, GatewayError, NoWorkers, RemoteError
from gateway.routes.deps import require_caller, services
from protocol import codec
from protocol.clock import now_ms

router = APIRouter(tags=["calls"])

EXAMPLE_PARAMS = {"vector_of": 42, "k": 3}


def parse_params(body: bytes) -> None:
    """The body must be a JSON object: checked here so a bad one never reaches a worker."""
    try:
        params = codec.loads(body) if body else None
    except ValueError:
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(params, dict):
        raise BadRequest("the body must be a JSON object of params")


@router.post(
    "/v1/rpc/{method}",
    dependencies=[Depends(require_caller)],
    summary="Call a method and wait for its result",
    response_description="The method's result",
    responses={
        200: {"content": {"application/json": {"example": {
            "id": "5f0c3d…", "result": [{"id": 42, "score": 1.0}]}}}},
        404: {"description": "unknown_method / not_found"},
        422: {"description": "invalid_params"},
        500: {"description": "worker_error / time_limit / result_too_large"},
        503: {"description": "overloaded / no_workers (with Retry-After)"},
        504: {"description": "deadline_exceeded"},
    },
    # The body is documented, not parsed by FastAPI: its bytes go to the worker as they came.
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "object", "description": "the method's params"},
        "example": EXAMPLE_PARAMS}}}},
)
async def call(
    method: str,
    request: Request,
    timeout: float | None = Query(None, gt=0, description="seconds to wait for the reply; "
                                  "default and maximum come from the settings"),
) -> Response:
    found = services(request)
    settings, metrics = found.settings, found.metrics
    body = await request.body()
    parse_params(body)
    seconds = min(timeout or settings.rpc_timeout_default, settings.rpc_timeout_max)
    started = time.perf_counter()
    code = "ok"
    metrics.in_flight.inc()
    try:
        pool = found.view.pool_of(method)
        if pool is not None and not found.view.has_live_worker(pool):
            raise NoWorkers(f"pool {pool} has no live consumer")
        call_id, reply = await found.rpc.call(method, body, now_ms() + int(seconds * 1000))
        decoded = codec.loads(reply.body)
        if decoded.get("ok"):
            return Response(codec.dumps({"id": call_id, "result": decoded.get("result")}),
                            media_type="application/json")
        error = decoded.get("error") or {}
        raise RemoteError(str(error.get("code", "worker_error")),
                          str(error.get("message", "the worker failed")), call_id=call_id)
    except GatewayError as exc:
        code = exc.code
        raise
    finally:
        metrics.in_flight.dec()
        metrics.calls.labels(method, code).inc()
        metrics.latency.labels(method).observe(time.perf_counter() - started)
