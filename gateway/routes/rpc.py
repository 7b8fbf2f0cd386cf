"""POST /v1/rpc/{method}: a synchronous-feeling call, documented here. Requests are served by
`gateway.fastpath` in front of the framework; both run `perform_call`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response

from gateway.calls import perform_call, trace_context
from gateway.routes.deps import require_caller, services

router = APIRouter(tags=["calls"])

EXAMPLE_PARAMS = {"vector_of": 42, "k": 3}


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
    trace = trace_context(request.headers.get)
    return Response(await perform_call(services(request), method, await request.body(), timeout,
                                       trace=trace), media_type="application/json")
