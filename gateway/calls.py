"""One sync call, from params bytes to response bytes: shared by the fast path and the route."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gateway.amqp.rpc import CallerGone
from gateway.errors import BadRequest, GatewayError, NoWorkers, RemoteError, UnknownMethod
from gateway.services import Services
from protocol import codec, names
from protocol.clock import now_ms

CLIENT_CLOSED = "client_closed"  # the metrics' code of a call whose caller hung up (nginx's 499)
UNKNOWN_METHOD_LABEL = "unknown"  # the metrics' method label of names no worker announced


def check_method_name(method: str) -> None:
    """At the edge: a name no pool could serve never reaches the broker (SPEC: method names)."""
    if not names.valid_method_name(method):
        raise UnknownMethod(f"{method[:64]!r}... is not a method name: at most "
                            f"{names.METHOD_NAME_MAX} ASCII letters, digits, '_', '-' or '.'"
                            if len(method) > 64 else
                            f"{method!r} is not a method name: at most {names.METHOD_NAME_MAX} "
                            "ASCII letters, digits, '_', '-' or '.'")


EMPTY_OBJECT = b"{}"


def json_object(body: bytes, shape: str) -> dict[str, Any]:
    """Parse a body that must be a JSON object (`shape` says which, in the error); an empty
    body is `{}` (a method with no params is called with no body: `curl -X POST`)."""
    try:
        value = codec.loads(body) if body.strip() else {}
    except ValueError:
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRequest(f"the body must be a JSON object: {shape}")
    return value


def parse_timeout(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"timeout must be a number of seconds, not {raw!r}") from None
    if not value > 0:
        raise BadRequest("timeout must be greater than 0")
    return value


def trace_context(header: Callable[[str], str | None]) -> dict[str, str] | None:
    """The caller's W3C trace context (traceparent, tracestate), to travel with its request."""
    found = {name: value for name in names.TRACE_HEADERS if (value := header(name)) is not None}
    return found or None


async def perform_call(found: Services, method: str, body: bytes, timeout: float | None,
                       call_id: str | None = None, trace: dict[str, str] | None = None) -> bytes:
    """The sync call, inside its spans when tracing is on (see transport.tracing)."""
    with found.tracing.publishing(f"POST /v1/rpc/{method}", method, trace, now_ms()) as headers:
        return await _perform_call(found, method, body, timeout, call_id, headers)


async def _perform_call(found: Services, method: str, body: bytes, timeout: float | None,
                        call_id: str | None, trace: dict[str, str] | None) -> bytes:
    """Forward the params as they came; answer `{"id", "result"}` bytes or raise (CallerGone
    when the caller hung up: `found.rpc.abandon(call_id, ...)`)."""
    settings, metrics = found.settings, found.metrics
    started = time.perf_counter()
    code = "ok"
    pool = found.view.pool_of(method)
    metrics.in_flight.inc()
    try:
        check_method_name(method)
        json_object(body, "the method's params")  # a bad one never reaches a worker
        body = body if body.strip() else EMPTY_OBJECT
        seconds = min(timeout or settings.rpc_timeout_default, settings.rpc_timeout_max)
        if pool is not None and not found.view.has_live_worker(pool):
            raise NoWorkers(f"pool {pool} has no live consumer")
        call_id, reply = await found.rpc.call(method, body, now_ms() + int(seconds * 1000),
                                              call_id=call_id, trace=trace)
        decoded = codec.loads(reply.body)
        if decoded.get("ok"):
            return codec.dumps({"id": call_id, "result": decoded.get("result")})
        error = decoded.get("error") or {}
        raise RemoteError(str(error.get("code", "worker_error")),
                          str(error.get("message", "the worker failed")), call_id=call_id,
                          status=error.get("status"), details=error.get("details"))
    except RemoteError as exc:
        code = exc.label
        raise
    except GatewayError as exc:
        code = exc.code
        raise
    except CallerGone:
        code = CLIENT_CLOSED
        raise
    finally:
        metrics.in_flight.dec()
        # Labels only for methods the fleet announced: a scan of random names stays one label.
        metrics.observe_call(method if pool is not None else UNKNOWN_METHOD_LABEL, code,
                             time.perf_counter() - started)
