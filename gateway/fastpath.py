"""POST /v1/rpc/{method} and POST /v1/jobs/{method}: the one implementation of a sync call and
of a job submission, bare ASGI handlers in front of FastAPI.

They are the hot paths: the framework's routing, dependency solving and middleware layers cost
about a third of the gateway's CPU per call (py-spy, c=64), so neither has a FastAPI route at
all (`gateway.openapi` describes them in /docs). Each does what a route would: the key check,
the body limit, the errors (`gateway.errors.render`) and the metrics. Everything else (reading,
following and cancelling jobs included) goes to the FastAPI app.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.amqp import CallerGone, new_call_id
from gateway.auth import Caller, bearer
from gateway.calls import perform_call
from gateway.errors import BadRequest, GatewayError, MethodNotAllowed
from gateway.jobs.documents import job_document, job_url
from gateway.limits import read_body
from gateway.params import parse_timeout, trace_context
from gateway.responses import send_error, send_json
from gateway.services import Services
from protocol import names

log = logging.getLogger("rpcfleet.gateway")

IDEMPOTENCY_KEY_MAX = 255
# RFC 7240: a preference whose value is not a number of seconds is not one (ignored).
PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+(?:\.\d+)?)\s*(?:[,;]|$)", re.IGNORECASE)
WATCH_AFTER_S = 0.1  # calls answered sooner never pay for watching their caller


@dataclass(frozen=True)
class Incoming:
    """A request to a fast route, its key checked and its body read."""

    method: str  # the RPC method named in the path
    scope: Scope
    headers: dict[bytes, bytes]
    caller: Caller
    body: bytes
    trace: dict[str, str] | None
    receive: Receive


Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]  # status, JSON body, extra headers
Handle = Callable[[Incoming], Awaitable[Answer]]


@dataclass(frozen=True)
class FastRoute:
    """A route served here, before FastAPI sees the request: the path's last segment, any
    one segment, is a method's name. The OpenAPI document describes these from this table, and a
    test holds every FastAPI route clear of them (a route added under one would otherwise be
    taken for a method name)."""

    template: str  # the path, "{method}" its last segment
    verb: str  # the HTTP method served
    refuses_other_verbs: bool  # other verbs: 405 here, or on to FastAPI's routes of the path
    what: str  # in the log of an unexpected failure
    prefix: str = field(init=False)  # the template before "{method}": read on every request

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", self.template.removesuffix("{method}"))


CALL = FastRoute("/v1/rpc/{method}", "POST", refuses_other_verbs=True, what="sync call")
SUBMIT = FastRoute("/v1/jobs/{method}", "POST", refuses_other_verbs=False,  # GET, DELETE: a job
                   what="job submission")
FAST_ROUTES = (CALL, SUBMIT)


def claimed(path: str, verb: str) -> tuple[FastRoute, str] | None:
    """The fast route a request belongs to and the method its path names; None: FastAPI's."""
    for route in FAST_ROUTES:
        if path.startswith(route.prefix):
            method = path[len(route.prefix):]
            if method and "/" not in method and (verb == route.verb or route.refuses_other_verbs):
                return route, method
    return None


class FastPath:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        claim = claimed(scope["path"], scope["method"]) if scope["type"] == "http" else None
        if claim is None:
            await self.app(scope, receive, send)
            return
        route, method = claim
        if scope["method"] != route.verb:
            await self._fail(send, MethodNotAllowed(
                f"{scope['method']} is not allowed on {scope['path']}", allow=route.verb))
            return
        handle = self._call if route is CALL else self._submit
        await self._serve(handle, route.what, method, scope, receive, send)

    async def _serve(self, handle: Handle, what: str, method: str, scope: Scope,
                     receive: Receive, send: Send) -> None:
        """What both routes do around their own work: the caller's key, the body (its limit and
        timeout), the trace context, and every error as the JSON envelope."""
        found = self.services
        try:
            headers: dict[bytes, bytes] = dict(scope["headers"])
            caller = found.auth.caller_for_key(bearer(_text(headers.get(b"authorization"))))
            body = await read_body(receive, headers.get(b"content-length"),
                                   found.settings.max_body_bytes, found.settings.body_timeout)
            trace = trace_context(lambda name: _text(headers.get(name.encode())))
            status, payload, extra = await handle(
                Incoming(method, scope, headers, caller, body, trace, receive))
        except CallerGone:
            return  # nobody to answer; its request is skipped if still queued
        except Exception as exc:
            if not isinstance(exc, GatewayError):
                log.exception("%s to %r failed unexpectedly", what, method[:128])
            await self._fail(send, exc)
            return
        await send_json(send, status, payload, extra)

    async def _submit(self, request: Incoming) -> Answer:
        """A job: 202 with it once it is stored and its request confirmed (200 if it ended
        within `Prefer: wait=N`), `Location` its URL."""
        key = _text(request.headers.get(b"idempotency-key"))
        if key is not None and not 0 < len(key) <= IDEMPOTENCY_KEY_MAX:
            # An empty one would be one key for every caller, method and body.
            raise BadRequest(f"Idempotency-Key: 1 to {IDEMPOTENCY_KEY_MAX} characters (send "
                             "none for a submission without one)")
        jobs = self.services.jobs
        assert jobs is not None, "the jobs service runs for as long as the app serves"
        job, _ = await jobs.submit(request.method, request.body, key, request.trace,
                                   request.caller)
        base = str(HTTPConnection(request.scope).base_url)
        headers = [(b"location", job_url(base, job.id).encode())]
        status = 202
        wait = PREFER_WAIT.search(_text(request.headers.get(b"prefer")) or "")
        if wait:
            seconds = min(float(wait.group(1)), self.services.settings.rpc_timeout_max)
            try:
                waited = await jobs.wait_terminal(job.id, seconds)
            except Exception as exc:
                # The job is accepted (stored, its request confirmed): answered as accepted, the
                # preference not applied, rather than an error that would hide its id.
                log.warning("job %s: could not wait for its end (%r); answering 202", job.id,
                            exc)
            else:
                job = waited
                # What was applied: the wait asked for, capped at RPCFLEET_RPC_TIMEOUT_MAX.
                headers.append((b"preference-applied", f"wait={seconds:g}".encode()))
                status = 200 if job.status.terminal else 202
        return status, job_document(job, base), headers

    async def _call(self, request: Incoming) -> Answer:
        """A sync call: 200 with the result, or the error it ended with."""
        timeout = None
        if request.scope["query_string"]:
            values = parse_qs(request.scope["query_string"].decode()).get("timeout")
            timeout = parse_timeout(values[-1] if values else None)
        payload = await self._answer(request.method, request.body, timeout, request.receive,
                                     request.trace)
        return 200, payload, []

    async def _fail(self, send: Send, exc: Exception) -> None:
        await send_error(send, exc, self.services.settings.retry_after)

    async def _answer(self, method: str, body: bytes, timeout: float | None,
                      receive: Receive, trace: dict[str, str] | None) -> bytes:
        """The call, abandoned if the caller hangs up first. With the body read, the server's
        next message for this request is its disconnect; listening for it costs about 10 % of
        the gateway's CPU per call, so it starts only once a call has waited `WATCH_AFTER_S`
        (a caller gone sooner is seen then: the server keeps the disconnect)."""
        call_id = new_call_id()
        watch: list[asyncio.Future[Any]] = []

        def on_hang_up(task: asyncio.Future[Any]) -> None:
            if (not task.cancelled() and task.exception() is None
                    and task.result()["type"] == "http.disconnect"):
                key = names.control_key_for(self.services.view.pool_of(method))
                self.services.rpc.abandon(call_id, key)

        def start_watching() -> None:
            watch.append(asyncio.ensure_future(receive()))
            watch[0].add_done_callback(on_hang_up)

        timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, start_watching)
        try:
            return await perform_call(self.services, method, body, timeout, call_id, trace)
        finally:
            timer.cancel()
            for task in watch:
                task.cancel()


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None
