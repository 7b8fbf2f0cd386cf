"""Errors a handler means (SPEC 1.2): `raise CallError("not_found", "no product 999",
status=404)` answers the call, or ends the job, with that code, message and status. It is the
application's answer, not a failure of the worker: no traceback is logged, and the metrics count
it apart from `worker_error` (as `call_error`)."""

from __future__ import annotations

from typing import Any

from protocol import codec
from protocol.errors import call_error_problem


class CallError(Exception):
    """The answer a handler means when it cannot give a result, as `HTTPException` in FastAPI.

    `code` matches `[a-z][a-z0-9_]{0,63}` (the application's own: `not_found`,
    `out_of_stock`...); `status` is one of 400, 403, 404, 409, 422, 429 (422 when not given);
    `details`, when given, any JSON value the caller gets with it. A bad code, status or details
    raises ValueError where the CallError is made, so the mistake shows in the handler's test."""

    def __init__(self, code: str, message: str, *, status: int = 422,
                 details: Any = None) -> None:
        problem = call_error_problem(code, status)
        if problem is not None:
            raise ValueError(f"CallError: {problem}")
        if details is not None:
            try:
                codec.dumps(details)
            except TypeError as exc:
                raise ValueError(f"CallError: details must be JSON ({exc}): {codec.JSON_RULE}"
                                 ) from None
        super().__init__(f"{code} ({status}): {message}")
        self.code = code
        self.message = message
        self.status = status
        self.details = details
