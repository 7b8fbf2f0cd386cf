"""Jobs over HTTP: submit (202), poll, follow as Server-Sent Events, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Depends,
    Header,
    Query,
    Request,
    Response,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.responses import StreamingResponse
from starlette.requests import HTTPConnection

from gateway.auth import TOKEN_TTL_S, Caller, bearer
from gateway.errors import GatewayError, error_body
from gateway.jobs.documents import job_document
from gateway.jobs.service import JobService
from gateway.routes.deps import CallerDep, require_caller, services
from gateway.store.rows import RECENT_MAX, JobEventRecord
from protocol import ErrorCode, Job, JobStatus, JobUpdate, codec

router = APIRouter(tags=["jobs"], dependencies=[Depends(require_caller)])

SSE_HEARTBEAT_S = 15.0  # a comment line keeps proxies from closing a quiet stream


def jobs(connection: HTTPConnection) -> JobService:
    """The jobs service of this process (its lifespan runs it while the app serves)."""
    service = services(connection).jobs
    assert service is not None, "the jobs service runs for as long as the app serves"
    return service


def job_body(job: Job, request: Request) -> bytes:
    return job_document(job, str(request.base_url))


# POST /v1/jobs/{method} (submit) has no route here: gateway.fastpath serves it in front of the
# framework, and gateway.openapi describes it.


@router.get("/v1/jobs", response_model=list[Job],
            summary="The newest jobs first: a caller key's own, every job for an admin")
async def list_jobs(
    request: Request, caller: CallerDep,
    status: Annotated[JobStatus | None, Query(description="only jobs in this state")] = None,
    method: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=RECENT_MAX)] = 50,
) -> Response:
    found = await jobs(request).recent(caller, limit, status, method)
    return Response(b"[" + b",".join(job_body(job, request) for job in found) + b"]",
                    media_type="application/json")


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
            response_class=StreamingResponse,
            responses={204: {"description": "resumed (Last-Event-ID) at or past the job's end: "
                                            "nothing more will come"}})
async def job_events(job_id: str, request: Request, caller: CallerDep,
                     last_event_id: int | None = Header(None, alias="Last-Event-ID", ge=0)
                     ) -> Response:
    """Every state and progress change in order, each with its `seq` (the SSE `id:`): from the
    first, or after `Last-Event-ID` when a client reconnects. A client resuming at or past
    the terminal event gets 204, which tells a browser's EventSource to stop reconnecting."""
    service = jobs(request)
    job = await service.get(job_id, caller)  # 404 before the stream starts
    if last_event_id and await service.ended_by(job, last_event_id):
        return Response(status_code=204, headers={"Cache-Control": "no-store"})
    return StreamingResponse(_stream(service, job_id, last_event_id or 0, str(request.base_url)),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _stream(service: JobService, job_id: str, after: int,
                  base_url: str) -> AsyncIterator[bytes]:
    events = service.follow(job_id, after)
    next_event = asyncio.ensure_future(anext(events))
    try:
        while True:
            done, _ = await asyncio.wait({next_event}, timeout=SSE_HEARTBEAT_S)
            if not done:
                yield b": keep-alive\n\n"  # a comment line keeps proxies from closing it
                continue
            try:
                record = next_event.result()
            except StopAsyncIteration:
                return
            # The job as polling answers it (its status_url too).
            yield (f"id: {record.seq}\nevent: {record.event}\ndata: ".encode()
                   + job_document(record.job, base_url) + b"\n\n")
            next_event = asyncio.ensure_future(anext(events))
    finally:
        # Cancelled mid-wait (the client left): the pending step still runs the generator,
        # so it is closed by that step's cancellation; otherwise closed here.
        if next_event.done():
            await events.aclose()
        else:
            next_event.cancel()


@router.post("/v1/tokens", summary="A token for a browser's WebSocket (60 s to open it)")
async def ws_token(request: Request, caller: CallerDep) -> dict[str, object]:
    return {"token": services(request).auth.issue_token(caller), "expires_in": TOKEN_TTL_S}


sockets = APIRouter(tags=["jobs"])


def _socket_caller(websocket: WebSocket, token: str | None) -> Caller:
    """Who opens the socket: a bearer key (other clients) or a token from POST /v1/tokens
    (browsers). Neither valid: the app's error boundary closes the socket (1008)."""
    auth = services(websocket).auth
    if token is not None and not auth.open:
        return auth.caller_from_token(token)
    return auth.caller_for_key(bearer(websocket.headers.get("authorization")))


def _frame(record: JobEventRecord) -> str:
    return JobUpdate(event=record.event, seq=record.seq, job=record.job).model_dump_json()


@sockets.websocket("/v1/jobs/{job_id}/ws")
async def job_socket(websocket: WebSocket, job_id: str, after: int = 0,
                     token: str | None = None) -> None:
    """One text frame per event, `{"event", "seq", "job"}`, from seq 1 (or after `?after=`),
    then the live ones; closes with 1000 after the terminal state."""
    caller = _socket_caller(websocket, token)
    service = jobs(websocket)
    await service.get(job_id, caller)  # not the caller's: closed 4404, its existence not told
    await websocket.accept()

    async def relay() -> None:
        async for record in service.follow(job_id, max(after, 0)):
            await websocket.send_text(_frame(record))
        await websocket.close(code=1000)

    # The server only sends here: a client that left is heard by reading (uvicorn does not
    # cancel the handler), else its follower would wait for the job's next event, for ever on
    # a job that never gets one, holding a connection slot.
    sending = asyncio.ensure_future(relay())
    listening = asyncio.ensure_future(_until_gone(websocket))
    try:
        await asyncio.wait({sending, listening}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sending, listening):
            task.cancel()
        await asyncio.gather(sending, listening, return_exceptions=True)
    if sending.done() and not sending.cancelled() and sending.exception() is not None:
        error = sending.exception()
        if not isinstance(error, WebSocketDisconnect):
            raise error  # type: ignore[misc]


async def _until_gone(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends until it disconnects."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


@sockets.websocket("/v1/jobs/ws")
async def jobs_socket(websocket: WebSocket, token: str | None = None) -> None:
    """One socket, many jobs (a page watching a user's uploads): the client sends
    `{"follow": id, "after"?: seq}` (and `{"unfollow": id}`); the server sends every followed
    job's events as on `/v1/jobs/{id}/ws` (the job object says which job), and
    `{"error": {"code", "message", "id"}}` for a job it cannot follow. It stays open until the
    client closes it."""
    caller = _socket_caller(websocket, token)
    service = jobs(websocket)
    await websocket.accept()
    following: dict[str, asyncio.Task[None]] = {}
    lock = asyncio.Lock()

    async def send(text: str) -> None:
        async with lock:
            await websocket.send_text(text)

    async def relay(job_id: str, after: int) -> None:
        try:
            async for record in service.follow(job_id, after):
                await send(_frame(record))
        finally:  # a job that ended is no longer followed: its place is free again
            if following.get(job_id) is asyncio.current_task():
                del following[job_id]

    try:
        while True:
            received = await websocket.receive()
            if received["type"] == "websocket.disconnect":
                break
            # A message the socket cannot read is answered, and the socket stays open with
            # what it follows (a binary frame, text that is not JSON, a bad `after`).
            message = _command(received.get("text"))
            if isinstance(message, str):
                await send(error_body(ErrorCode.INVALID_PARAMS, message, None).decode())
                continue
            if "unfollow" in message and (task := following.pop(str(message["unfollow"]), None)):
                task.cancel()
            if "follow" in message:
                job_id = str(message["follow"])
                try:
                    await service.get(job_id, caller)
                except GatewayError as exc:  # an error frame; the socket stays open
                    await send(error_body(exc.code, exc.message, job_id).decode())
                    continue
                if job_id in following:
                    continue
                limit = services(websocket).settings.ws_follow_max
                if len(following) >= limit:
                    await send(error_body(
                        ErrorCode.OVERLOADED, f"this socket follows {limit} jobs still under way "
                        "(RPCFLEET_WS_FOLLOW_MAX); unfollow one or open another socket",
                        job_id).decode())
                    continue
                following[job_id] = asyncio.ensure_future(
                    relay(job_id, max(message.get("after") or 0, 0)))
    except WebSocketDisconnect:
        pass
    finally:
        for task in following.values():
            task.cancel()


def _command(text: str | None) -> dict[str, Any] | str:
    """A socket's command (`{"follow": id, "after"?: seq}`, `{"unfollow": id}`), or what is
    wrong with it."""
    if text is None:
        return 'send text frames: {"follow": "<job id>", "after"?: <seq>} or {"unfollow": ...}'
    try:
        message = codec.loads(text)
    except ValueError:
        return "the message is not valid JSON"
    if not isinstance(message, dict):
        return 'a message is a JSON object: {"follow": "<job id>"} or {"unfollow": "<job id>"}'
    after = message.get("after", 0)
    if after is not None and type(after) is not int:
        return f"after must be an integer (an event's seq), not {after!r}"[:200]
    return message
