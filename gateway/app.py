"""The gateway application: `create_app(settings)`; its lifespan owns every resource.

Lifespan order: broker link (connects in the background, retrying) → reply consumer, event
listener (start once connected) → queue stats → extensions (jobs) → serve → close in reverse.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from gateway import openapi
from gateway.errors import GatewayError, error_body
from gateway.fastpath import RpcFastPath
from gateway.jobs import jobs_extension
from gateway.limits import BodyLimit
from gateway.routes import fleet, health, jobs, rpc, ui
from gateway.services import Services
from rpcfleet.settings import GatewaySettings

log = logging.getLogger("rpcfleet.gateway")

# An extension adds routes to the app and resources to the lifespan: the jobs service is one.
Extension = Callable[[FastAPI, Services], AbstractAsyncContextManager[None]]

DESCRIPTION = """Put a fleet of cache-holding Python workers behind an HTTP API.

* `POST /v1/rpc/{method}` waits for the result; `POST /v1/jobs/{method}` answers 202 at once.
* Errors are always `{"error": {"code", "message", "id"?}}`.
"""


def create_app(settings: GatewaySettings,
               extensions: tuple[Extension, ...] | None = None) -> FastAPI:
    if extensions is None:
        extensions = default_extensions()
    services = Services.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services.auth.open:
            log.warning("no RPCFLEET_API_KEYS / RPCFLEET_ADMIN_KEYS: every route is open; "
                        "keep this gateway on 127.0.0.1 or set keys")
        async with AsyncExitStack() as stack:
            stack.callback(services.metrics.close)
            await stack.enter_async_context(services.link)
            await stack.enter_async_context(services.queues)
            for extension in extensions:
                await stack.enter_async_context(extension(app, services))
            yield

    app = FastAPI(title="rpcfleet", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.services = services
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    for router in (rpc.router, jobs.router, fleet.router, health.router, ui.router):
        app.include_router(router)
    install_error_handlers(app, settings.retry_after)
    openapi.install(app, services.view)
    return app


def default_extensions() -> tuple[Extension, ...]:
    return (jobs_extension,)


def install_error_handlers(app: FastAPI, retry_after: int) -> None:
    def respond(status: int, code: str, message: str, call_id: str | None = None,
                headers: dict[str, str] | None = None) -> Response:
        return Response(error_body(code, message, call_id), status_code=status,
                        media_type="application/json", headers=headers)

    async def gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return Response(exc.body(), status_code=exc.status, media_type="application/json",
                        headers=exc.headers(retry_after))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code,
                                                                  "invalid_params")
        message = {404: f"no route {request.method} {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(
            exc.status_code, str(exc.detail))
        return respond(exc.status_code, code, message, headers=dict(exc.headers or {}))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        details = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
            for err in exc.errors())
        return respond(422, "invalid_params", details or "invalid request")

    handlers: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
        GatewayError: gateway_error,
        HTTPException: http_error,
        RequestValidationError: validation_error,
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)


def with_fast_path(app: FastAPI) -> ASGIApp:
    """The app behind the sync-call fast path (see gateway.fastpath)."""
    return RpcFastPath(app, app.state.services)


def app_from_env() -> ASGIApp:
    """uvicorn factory: each gateway worker process builds its own app from the environment."""
    return with_fast_path(create_app(GatewaySettings()))
