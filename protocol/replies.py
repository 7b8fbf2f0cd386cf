"""Reply envelope: {"ok": true, "result": ...} or {"ok": false, "error": {"code", "message"}}; an
error a handler means (`workers.CallError`) adds its HTTP `status` and, when given, `details`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from protocol import codec
from protocol.errors import ErrorCode


class ErrorBody(BaseModel):
    code: str
    message: str
    # Set for an error a handler means (SPEC 1.2, `workers.CallError`): the HTTP status to
    # answer with, and what else it said (JSON). Left out of the JSON when unset.
    status: int | None = Field(default=None, exclude_if=lambda value: value is None)
    details: Any = Field(default=None, exclude_if=lambda value: value is None)


class Reply(BaseModel):
    ok: bool
    result: Any = None
    error: ErrorBody | None = None

    @classmethod
    def failure(cls, code: ErrorCode | str, message: str) -> Reply:
        return cls(ok=False, error=ErrorBody(code=str(code), message=message))

    @property
    def failed_with(self) -> ErrorBody:
        """A failed reply's error; one that names none is a worker_error."""
        return self.error or UNSAID


UNSAID = ErrorBody(code=ErrorCode.WORKER_ERROR, message="the worker failed without saying why")


def encode_success(result: Any) -> bytes:
    """Fast path for the hot loop: no model is built for a successful reply."""
    return codec.dumps({"ok": True, "result": result})


def encode_failure(code: ErrorCode | str, message: str, status: int | None = None,
                   details: Any = None) -> bytes:
    error: dict[str, Any] = {"code": str(code), "message": message}
    if status is not None:
        error["status"] = status
    if details is not None:
        error["details"] = details
    return codec.dumps({"ok": False, "error": error})


def decode(body: bytes) -> Reply:
    """Parse a reply body: the one decoder of replies (sync calls, jobs, the test kit). A body
    that is not a reply becomes a worker_error failure. A success is not validated field by
    field (its result is any JSON): the hot path builds no more than the model."""
    try:
        value = codec.loads(body)
        if type(value) is dict and value.get("ok") is True and "error" not in value:
            return Reply.model_construct(ok=True, result=value.get("result"))
        return Reply.model_validate(value)
    except ValueError as exc:
        return Reply.failure(ErrorCode.WORKER_ERROR, f"malformed reply: {exc}")
