"""Error codes of the contract and the HTTP status each one maps to (SPEC: Errors)."""

from __future__ import annotations

import re
from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_PARAMS = "invalid_params"
    UNKNOWN_METHOD = "unknown_method"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    OVERLOADED = "overloaded"
    NO_WORKERS = "no_workers"
    UNAVAILABLE = "unavailable"  # (1.2) a queue electing a leader, a connection lost mid-publish
    WORKER_ERROR = "worker_error"
    TIME_LIMIT = "time_limit"
    RESULT_TOO_LARGE = "result_too_large"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    # Extensions: the gateway itself failed unexpectedly (a bug; never a worker's failure); a
    # request body that did not arrive within the gateway's body timeout.
    INTERNAL_ERROR = "internal_error"
    REQUEST_TIMEOUT = "request_timeout"
    # Outcomes of jobs that end without a handler's answer.
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    MAX_ATTEMPTS = "max_attempts"


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_PARAMS: 422,
    ErrorCode.UNKNOWN_METHOD: 404,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.CONFLICT: 409,
    ErrorCode.DEADLINE_EXCEEDED: 504,
    ErrorCode.REQUEST_TIMEOUT: 408,
    ErrorCode.OVERLOADED: 503,
    ErrorCode.NO_WORKERS: 503,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.WORKER_ERROR: 500,
    ErrorCode.TIME_LIMIT: 500,
    ErrorCode.RESULT_TOO_LARGE: 500,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.CANCELLED: 409,
    ErrorCode.EXPIRED: 504,
    ErrorCode.MAX_ATTEMPTS: 500,
}


# Errors a handler means (SPEC 1.2): `workers.CallError(code, message, status=...)`. Its code is
# the application's own, in this shape; its status one of these client errors.
CALL_ERROR_CODE = r"[a-z][a-z0-9_]{0,63}"
CALL_ERROR_STATUSES = frozenset({400, 403, 404, 409, 422, 429})
# What the gateway's metrics call every such answer (one label, whatever the application's codes).
CALL_ERROR_LABEL = "call_error"


def call_error_problem(code: object, status: object) -> str | None:
    """What makes (code, status) not an error a handler may mean, or None when it may."""
    if not isinstance(code, str) or re.fullmatch(CALL_ERROR_CODE, code) is None:
        return f"code {code!r} must match {CALL_ERROR_CODE}"
    if status not in CALL_ERROR_STATUSES:
        return f"status {status!r} must be one of {sorted(CALL_ERROR_STATUSES)}"
    return None


class DeadReason(StrEnum):
    """Why a request went to the dead-letter exchange (header x-rpcfleet-dead-reason)."""

    MALFORMED = "malformed"
    EXPIRED = "expired"
    MAX_ATTEMPTS = "max_attempts"
    UNKNOWN_METHOD = "unknown_method"
    CANCELLED = "cancelled"
    RETIRED = "retired"  # its pool was taken out of service without a drain (1.2)
