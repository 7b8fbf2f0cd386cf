"""The gateway's exceptions, one rooted tree, mapped to HTTP in one handler (`error_response`).

    GatewayError(code, message, status)
    ├── BadRequest ........................ 422 invalid_params
    ├── NotFound .......................... 404 not_found
    ├── UnknownMethod ..................... 404 unknown_method   (the broker returned the call)
    ├── Conflict .......................... 409 conflict
    ├── DeadlineExceeded (+TimeoutError) .. 504 deadline_exceeded
    ├── Retryable ......................... 503 + Retry-After
    │   ├── Overloaded .................... overloaded (the queue full, the broker down or blocked)
    │   ├── Unavailable ................... unavailable (a queue that cannot take the request now:
    │   │                                   a quorum queue changing leader; the connection lost)
    │   ├── PublishUnknown ................ the publish may have reached the broker (keeps the id):
    │   │   ├── NotConfirmed .............. overloaded (no confirm in time: blocked, or down)
    │   │   └── LostMidPublish ............ unavailable (the connection went mid-publish)
    │   ├── PublishedUnrecorded ........... unavailable (queued, but the store failed after)
    │   └── NoWorkers ..................... no_workers
    ├── PayloadTooLarge ................... 413 payload_too_large
    ├── RequestTimeout .................... 408 request_timeout (the body did not arrive in time)
    ├── Unauthorized / Forbidden .......... 401 / 403
    ├── MethodNotAllowed .................. 405 method_not_allowed
    ├── InternalError ..................... 500 internal_error (anything unexpected: a bug)
    └── RemoteError ....................... the worker's own code (worker_error, time_limit, ...),
                                            or its handler's CallError (its code and status)

`render` turns any exception into the response parts, for the fast path and the app alike;
`render_close` into a WebSocket's close code and reason.
"""

from __future__ import annotations

from typing import Any

from gateway.store.base import is_outage
from protocol import HTTP_STATUS, ErrorCode, codec
from protocol.errors import CALL_ERROR_LABEL, call_error_problem


class CallerGone(Exception):
    """The HTTP caller hung up (before its body arrived, or before the reply came): nobody is
    left to answer, and nothing it did not finish sending is acted on."""


class GatewayError(Exception):
    code: ErrorCode = ErrorCode.WORKER_ERROR

    def __init__(self, message: str, *, call_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.call_id = call_id

    @property
    def status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    def headers(self, retry_after: int) -> dict[str, str]:
        return {}

    def body(self) -> bytes:
        return error_body(self.code, self.message, self.call_id)


class BadRequest(GatewayError):
    code = ErrorCode.INVALID_PARAMS


class NotFound(GatewayError):
    code = ErrorCode.NOT_FOUND


class UnknownMethod(GatewayError):
    code = ErrorCode.UNKNOWN_METHOD


class Conflict(GatewayError):
    code = ErrorCode.CONFLICT


class DeadlineExceeded(GatewayError, TimeoutError):
    code = ErrorCode.DEADLINE_EXCEEDED


class Retryable(GatewayError):
    """A 503: the same request may succeed after Retry-After (the client retries it)."""

    def headers(self, retry_after: int) -> dict[str, str]:
        return {"Retry-After": str(retry_after)}


class Overloaded(Retryable):
    code = ErrorCode.OVERLOADED


class Unavailable(Retryable):
    """The request could not be taken right now for a reason that passes by itself: the pool's
    queue refuses this gateway while its leader moves, or the connection went mid-call. Carries
    the job's (or call's) id whenever it may exist."""

    code = ErrorCode.UNAVAILABLE


class PublishUnknown(Retryable):
    """No confirm within the publish timeout, or the connection went mid-publish: the broker
    may hold the request. A job stays (and its 503 carries its id); only a definite refusal
    means nothing was enqueued."""


class NotConfirmed(PublishUnknown, Overloaded):
    """No confirm within the publish timeout (the broker blocked by an alarm, or gone)."""


class LostMidPublish(PublishUnknown, Unavailable):
    """The connection or channel went while the publish waited for its confirm."""


class PublishedUnrecorded(Unavailable):
    """The broker confirmed a job's request, but the store could not mark it published: the
    job exists and runs (answered with its id), never deleted as if refused."""


class NoWorkers(Retryable):
    code = ErrorCode.NO_WORKERS


class PayloadTooLarge(GatewayError):
    code = ErrorCode.PAYLOAD_TOO_LARGE


class RequestTimeout(GatewayError):
    code = ErrorCode.REQUEST_TIMEOUT


class Unauthorized(GatewayError):
    code = ErrorCode.UNAUTHORIZED

    def headers(self, retry_after: int) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(GatewayError):
    code = ErrorCode.FORBIDDEN


class MethodNotAllowed(GatewayError):
    """A 405, saying the verbs the path takes (`Allow`, as RFC 9110 requires of a 405)."""

    code = ErrorCode.METHOD_NOT_ALLOWED

    def __init__(self, message: str, *, allow: str | None = None) -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self, retry_after: int) -> dict[str, str]:
        return {"Allow": self.allow} if self.allow else {}


class InternalError(GatewayError):
    code = ErrorCode.INTERNAL_ERROR


class RemoteError(GatewayError):
    """A worker's failure reply, carrying its code; or an error its handler meant (a
    `workers.CallError`: the application's code, its status and details, answered as they are)."""

    def __init__(self, code: str, message: str, *, call_id: str | None = None,
                 status: object = None, details: Any = None) -> None:
        super().__init__(message, call_id=call_id)
        self.meant = status is not None and call_error_problem(code, status) is None
        self.given_code, self.given_status, self.details = code, status, details
        try:
            self.code = ErrorCode(code)
        except ValueError:
            self.code = ErrorCode.WORKER_ERROR

    @property
    def status(self) -> int:
        if self.meant:
            assert isinstance(self.given_status, int)
            return self.given_status
        return HTTP_STATUS.get(self.code, 500)

    @property
    def label(self) -> str:
        """What the metrics call it: every error a handler meant is one label."""
        return CALL_ERROR_LABEL if self.meant else str(self.code)

    def body(self) -> bytes:
        if self.meant:
            return error_body(self.given_code, self.message, self.call_id, self.details)
        return error_body(self.code, self.message, self.call_id)


def as_gateway_error(exc: BaseException) -> GatewayError:
    """Any exception as the error it is answered with: a database outage is `unavailable`,
    anything unexpected `internal_error` (its type named, nothing more)."""
    if isinstance(exc, GatewayError):
        return exc
    if is_outage(exc):
        return Unavailable(f"the job store cannot take the request right now "
                           f"({type(exc).__name__}); try again")
    return InternalError(f"the gateway failed: {type(exc).__name__}")


def render(exc: BaseException, retry_after: int) -> tuple[int, bytes, dict[str, str]]:
    """(status, JSON body, headers) of an error answer: the one renderer of the gateway."""
    exc = as_gateway_error(exc)
    return exc.status, exc.body(), exc.headers(retry_after)


# A WebSocket's close for an error (RFC 6455 codes; 4404 is ours): a browser can read the code
# (it cannot read the status of a refused handshake), and the reason says "code: message".
WS_CLOSE = {ErrorCode.UNAUTHORIZED: 1008, ErrorCode.FORBIDDEN: 1008, ErrorCode.NOT_FOUND: 4404,
            ErrorCode.OVERLOADED: 1013, ErrorCode.UNAVAILABLE: 1013, ErrorCode.NO_WORKERS: 1013}
WS_POLICY, WS_TRY_AGAIN, WS_INTERNAL = 1008, 1013, 1011
WS_REASON_MAX = 123  # bytes: a close frame carries at most 125, the code's two included


def render_close(exc: BaseException) -> tuple[int, str]:
    """(close code, reason) of a WebSocket ended by `exc`: the same error as `render`'s."""
    exc = as_gateway_error(exc)
    code = WS_CLOSE.get(exc.code, WS_POLICY if exc.status < 500 else WS_INTERNAL)
    reason = f"{exc.code}: {exc.message}".encode()[:WS_REASON_MAX].decode(errors="ignore")
    return code, reason


def error_body(code: str, message: str, call_id: str | None = None,
               details: Any = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if call_id:
        error["id"] = call_id
    if details is not None:
        error["details"] = details
    return codec.dumps({"error": error})
