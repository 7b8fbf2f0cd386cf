"""Jobs over HTTP: submit (202), poll, follow as Server-Sent Events, cancel."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import StreamingResponse

from gateway.calls import trace_context
from gateway.jobs.service import JobService
from gateway.routes.deps import CallerDep, require_caller, services
from protocol import Job, JobSubmission, codec

router = APIRouter(tags=["jobs"], dependencies=[Depends(require_caller)])

PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
SSE_HEARTBEAT_S = 15.0  # a comment line keeps proxies from closing a quiet stream
EXAMPLE = {"params": {"steps": 5}, "callback_url": "https://example.com/hooks/rpcfleet",
           "priority": 5, "timeout": 600}


def jobs(request: Request) -> JobService:
    service: JobService = services(request).extras["jobs"]
    return service


def job_body(job: Job, request: Request) -> bytes:
    data: dict[str, Any] = job.model_dump(mode="json")
    data["status_url"] = str(request.url_for("get_job", job_id=job.id))
    return codec.dumps(data)


@router.post(
    "/v1/jobs/{method}", status_code=202,
    summary="Submit a job: 202 with the job now, the result later (poll, stream or callback)",
    responses={200: {"description": "finished within Prefer: wait=N"},
               202: {"description": "accepted; Location points at the job"},
               404: {"description": "unknown_method"}, 422: {"description": "invalid_params"},
               503: {"description": "overloaded"}},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": JobSubmission.model_json_schema(), "example": EXAMPLE}}}},
)
async def submit(method: str, request: Request, caller: CallerDep,
                 idempotency_key: str | None = Header(None, max_length=255),
                 prefer: str | None = Header(None, description="wait=N (RFC 7240)")
                 ) -> Response:
    service = jobs(request)
    job, _ = await service.submit(method, await request.body(), idempotency_key,
                                  trace_context(request.headers.get), caller)
    headers = {"Location": str(request.url_for("get_job", job_id=job.id))}
    wait = PREFER_WAIT.search(prefer or "")
    if wait:
        seconds = min(float(wait.group(1)), services(request).settings.rpc_timeout_max)
        job = await service.wait_terminal(job.id, seconds)
        headers["Preference-Applied"] = f"wait={wait.group(1)}"
        if job.status.terminal:
            return Response(job_body(job, request), status_code=200,
                            media_type="application/json", headers=headers)
    return Response(job_body(job, request), status_code=202, media_type="application/json",
                    headers=headers)


@router.get("/v1/jobs/{job_id}", name="get_job", response_model=Job, summary="The job object")
async def get_job(job_id: str, request: Request, caller: CallerDep) -> Response:
    return Response(job_body(await jobs(request).get(job_id, caller), request),
                    media_type="application/json")


@router.delete("/v1/jobs/{job_id}", status_code=202, response_model=Job,
               summary="Cancel: a queued job never runs; a running one is stopped")
async def cancel_job(job_id: str, request: Request, caller: CallerDep) -> Response:
    job = await jobs(request).cancel(job_id, caller)
    return Response(job_body(job, request), status_code=202, media_type="application/json")


@router.get("/v1/jobs/{job_id}/events", summary="Server-Sent Events until the job ends",
            response_class=StreamingResponse)
async def job_events(job_id: str, request: Request, caller: CallerDep) -> StreamingResponse:
    service = jobs(request)
    await service.get(job_id, caller)  # 404 before the stream starts
    return StreamingResponse(_stream(service, job_id, request), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _stream(service: JobService, job_id: str, request: Request) -> AsyncIterator[bytes]:
    event = service.hub.follow(job_id)
    last: tuple[object, ...] | None = None
    last_status = None
    sequence = 0
    quiet = 0.0
    try:
        while True:
            event.clear()
            job = await service.get(job_id)
            state = (job.status, job.progress, job.attempts)
            if state != last:
                last = state
                sequence += 1
                # A new state is named after it; a change within the state is progress.
                kind = "progress" if job.status == last_status else str(job.status)
                last_status = job.status
                yield (f"id: {sequence}\nevent: {kind}\ndata: ".encode()
                       + codec.dumps(job.model_dump(mode="json")) + b"\n\n")
                quiet = 0.0
            if job.status.terminal or await request.is_disconnected():
                return
            try:  # woken by this process's hub; the timeout covers changes stored elsewhere
                await asyncio.wait_for(event.wait(), 1.0)
            except TimeoutError:
                quiet += 1.0
                if quiet >= SSE_HEARTBEAT_S:
                    quiet = 0.0
                    yield b": keep-alive\n\n"
    finally:
        service.hub.unfollow(job_id, event)
