"""Error codes of the contract and the HTTP status each one maps to (SPEC: Errors)."""

from __future__ import annotations

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


class DeadReason(StrEnum):
    """Why a request went to the dead-letter exchange (header x-rpcfleet-dead-reason)."""

    MALFORMED = "malformed"
    EXPIRED = "expired"
    MAX_ATTEMPTS = "max_attempts"
    UNKNOWN_METHOD = "unknown_method"
    CANCELLED = "cancelled"
