"""Liveness, readiness and metrics: open routes (lock them at the network edge)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.errors import Overloaded, render
from gateway.routes.deps import services

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: broker connected and reply consumers up",
            responses={503: {"description": "not ready"}})
async def readyz(request: Request) -> Response:
    """Ready when the broker is connected and both reply consumers are up: the sync calls' and
    the jobs' (whose queues may have failed to declare: a job would wait, then get 503)."""
    found = services(request)
    jobs_ready = found.jobs is None or found.jobs.outcomes.ready.is_set()
    if found.rpc.ready and jobs_ready:
        return Response(b'{"status":"ready"}', media_type="application/json")
    reason = ("the broker is not connected" if not found.link.up
              else "no reply consumer" if not found.rpc.ready else "no job reply consumer")
    status, body, headers = render(Overloaded(f"not ready: {reason}"), found.settings.retry_after)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


@router.get("/metrics", summary="Prometheus metrics of the gateway (all its processes)")
async def metrics(request: Request) -> Response:
    return Response(generate_latest(services(request).metrics.exposition),
                    media_type=CONTENT_TYPE_LATEST)
