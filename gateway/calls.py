"""One sync call, from params bytes to response bytes: shared by the fast path and the route."""

from __future__ import annotations

import time

from gateway.errors import CallerGone, GatewayError, NoWorkers, RemoteError
from gateway.params import EMPTY_OBJECT, check_method_name, json_object
from gateway.services import Services
from protocol import codec, replies
from protocol.clock import now_ms

CLIENT_CLOSED = "client_closed"  # the metrics' code of a call whose caller hung up (nginx's 499)
UNKNOWN_METHOD_LABEL = "unknown"  # the metrics' method label of names no worker announced


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
        # A method no beat announced since this process has heard every live worker: if a
        # queue still takes it (a pool whose workers all died before this gateway started),
        # nobody will serve it before its deadline (SPEC: no_workers at once, never a 504).
        unheard = pool is None and found.view.heard_every_worker(settings.beat_interval)
        call_id, reply = await found.rpc.call(method, body, now_ms() + int(seconds * 1000),
                                              call_id=call_id, trace=trace, unserved=unheard)
        answer = replies.decode(reply.body)
        if answer.ok:
            return codec.dumps({"id": call_id, "result": answer.result})
        error = answer.failed_with
        raise RemoteError(error.code, error.message, call_id=call_id, status=error.status,
                          details=error.details)
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
