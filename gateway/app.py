"""The gateway application: `create_app(settings)`; its lifespan owns every resource.

Lifespan order: broker link (connects in the background, retrying) → reply consumer, event
listener (start once connected) → queue stats → jobs service → serve → close in reverse.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Response
from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp
from starlette.websockets import WebSocket

from gateway import openapi
from gateway.browsers import BrowserGuard
from gateway.errors import BadRequest, GatewayError, MethodNotAllowed, NotFound, render
from gateway.fastpath import FastPath
from gateway.jobs import jobs_running
from gateway.lean import without_pydantic_v1
from gateway.limits import BodyLimit, ConnectionLimit
from gateway.responses import close_socket
from gateway.services import Services
from gateway.settings import GatewaySettings
from gateway.store.base import is_outage, outage_types

with without_pydantic_v1():
    from gateway.routes import contract, fleet, health, jobs, ui

log = logging.getLogger("rpcfleet.gateway")

DESCRIPTION = """Put a fleet of cache-holding Python workers behind an HTTP API.

* `POST /v1/rpc/{method}` waits for the result; `POST /v1/jobs/{method}` answers 202 at once.
* Errors are always `{"error": {"code", "message", "id"?}}`.
"""


def create_app(settings: GatewaySettings) -> FastAPI:
    """The FastAPI app: every route but the sync call, which `with_fast_path` puts in front
    (with the browser guard); `app_from_env` is what uvicorn serves."""
    services = Services.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services.auth.open:
            log.warning("no RPCFLEET_API_KEYS / RPCFLEET_ADMIN_KEYS: every route is open; "
                        "keep this gateway on 127.0.0.1 or set keys")
        async with AsyncExitStack() as stack:
            services.tracing.configure("rpcfleet-gateway", settings.otel_exporter)
            stack.callback(services.tracing.shutdown)
            stack.callback(services.metrics.close)
            await stack.enter_async_context(services.link)
            stack.push_async_callback(services.rpc.close)  # before the link closes
            await stack.enter_async_context(services.queues)
            await stack.enter_async_context(services.retirements)
            await stack.enter_async_context(jobs_running(services))
            yield

    app = FastAPI(title="rpcfleet", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.services = services
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes,
                       timeout=settings.body_timeout)
    with without_pydantic_v1():
        for router in (jobs.router, jobs.sockets, fleet.router, health.router, contract.router,
                       ui.router):
            app.include_router(router)
    if settings.pages_dir is not None:
        app.mount("/pages", StaticFiles(directory=settings.pages_dir), name="pages")
    install_error_handlers(app, settings.retry_after, postgres=settings.job_store is not None)
    openapi.install(app, services.view)
    return app


def install_error_handlers(app: FastAPI, retry_after: int, postgres: bool = False) -> None:
    """The app's one error boundary, HTTP and WebSocket alike (Starlette looks the handler up by
    the exception's class for both): routes only raise. An HTTP error leaves as the JSON
    envelope of `gateway.errors.render` (FastAPI's own 404/405/422 mapped onto the tree first,
    anything unexpected a 500); a WebSocket's closes with `render_close`'s code and reason."""

    async def respond(connection: HTTPConnection, exc: Exception) -> Response | None:
        verb, path = connection.scope.get("method", "WEBSOCKET"), connection.url.path
        what = f"{verb} {path}"
        if isinstance(exc, HTTPException):
            exc = {404: NotFound(f"no route {what}"),
                   405: MethodNotAllowed(f"{verb} is not allowed on {path}",
                                         allow=(exc.headers or {}).get("Allow"))}.get(
                exc.status_code, BadRequest(str(exc.detail)))
        elif isinstance(exc, RequestValidationError | WebSocketRequestValidationError):
            details = "; ".join(
                f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
                for err in exc.errors())
            exc = BadRequest(details or "invalid request")
        elif is_outage(exc):
            log.warning("%s: the job store cannot take it now (%s: %s)", what,
                        type(exc).__name__, str(exc).splitlines()[0])
        elif not isinstance(exc, GatewayError):
            log.error("%s failed unexpectedly", what, exc_info=exc)
        if isinstance(connection, WebSocket):
            await close_socket(connection, exc)
            return None
        status, body, headers = render(exc, retry_after)
        return Response(body, status_code=status, media_type="application/json",
                        headers=headers)

    for kind in (GatewayError, HTTPException, RequestValidationError,
                 WebSocketRequestValidationError, *outage_types(postgres), Exception):
        app.add_exception_handler(kind, respond)  # type: ignore[arg-type]


def with_fast_path(app: FastAPI) -> ASGIApp:
    """The app behind the fast paths of sync calls and job submissions (see gateway.fastpath),
    both behind the browser guard of keyless gateways (see gateway.browsers), all behind the
    connection limit (see gateway.limits)."""
    services: Services = app.state.services
    settings = services.settings
    guarded = BrowserGuard(FastPath(app, services), enabled=services.auth.open,
                           allowed_hosts=settings.allowed_hosts,
                           allowed_origins=settings.allowed_origins,
                           bind_host=settings.bind_host())
    return ConnectionLimit(guarded, settings.max_connections, settings.retry_after)


def app_for(settings: GatewaySettings) -> ASGIApp:
    """The gateway app for `settings`: what `rpcfleet gateway`'s factory
    (`rpcfleet.commands.gateway.serving_app`, bound to the settings it resolved and pickled with
    uvicorn's config) builds in each of its processes."""
    return with_fast_path(create_app(settings))


def app_from_env() -> ASGIApp:
    """uvicorn factory for running the gateway under uvicorn's own command line
    (`uvicorn gateway.app:app_from_env --factory`): settings from the environment only."""
    return app_for(GatewaySettings())
