"""The gateway's exceptions, one rooted tree, mapped to HTTP in one handler (`error_response`).

    GatewayError(code, message, status)
    ├── BadRequest ........................ 422 invalid_params
    ├── NotFound .......................... 404 not_found
    ├── UnknownMethod ..................... 404 unknown_method   (the broker returned the call)
    ├── Conflict .......................... 409 conflict
    ├── DeadlineExceeded (+TimeoutError) .. 504 deadline_exceeded
    ├── Unavailable ....................... 503 + Retry-After
    │   ├── Overloaded .................... overloaded (nack, broker down or blocked)
    │   │   └── PublishUnknown ............ the publish may have reached the broker
    │   └── NoWorkers ..................... no_workers
    ├── PayloadTooLarge ................... 413 payload_too_large
    ├── RequestTimeout .................... 408 request_timeout (the body did not arrive in time)
    ├── Unauthorized / Forbidden .......... 401 / 403
    ├── MethodNotAllowed .................. 405 method_not_allowed
    ├── InternalError ..................... 500 internal_error (anything unexpected: a bug)
    └── RemoteError ....................... the worker's own code (worker_error, time_limit, ...)

`render` turns any exception into the response parts, for the fast path and the app alike.
"""

from __future__ import annotations

from typing import Any

from protocol import HTTP_STATUS, ErrorCode, codec


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


class Unavailable(GatewayError):
    def headers(self, retry_after: int) -> dict[str, str]:
        return {"Retry-After": str(retry_after)}


class Overloaded(Unavailable):
    code = ErrorCode.OVERLOADED


class PublishUnknown(Overloaded):
    """No confirm within the publish timeout, or the connection went mid-publish: the broker
    may hold the request. A job stays (and its 503 carries its id); only a definite refusal
    means nothing was enqueued."""


class NoWorkers(Unavailable):
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
    code = ErrorCode.METHOD_NOT_ALLOWED


class InternalError(GatewayError):
    code = ErrorCode.INTERNAL_ERROR


class RemoteError(GatewayError):
    """A worker's failure reply, carrying its code."""

    def __init__(self, code: str, message: str, *, call_id: str | None = None) -> None:
        super().__init__(message, call_id=call_id)
        try:
            self.code = ErrorCode(code)
        except ValueError:
            self.code = ErrorCode.WORKER_ERROR


def render(exc: BaseException, retry_after: int) -> tuple[int, bytes, dict[str, str]]:
    """(status, JSON body, headers) of an error answer: the one renderer of the gateway."""
    if not isinstance(exc, GatewayError):
        exc = InternalError(f"the gateway failed: {type(exc).__name__}")
    return exc.status, exc.body(), exc.headers(retry_after)


def error_body(code: str, message: str, call_id: str | None = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if call_id:
        error["id"] = call_id
    return codec.dumps({"error": error})
