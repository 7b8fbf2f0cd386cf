"""Reply envelope: {"ok": true, "result": ...} or {"ok": false, "error": {"code", "message"}}."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from protocol import codec
from protocol.errors import ErrorCode


class ErrorBody(BaseModel):
    code: str
    message: str


class Reply(BaseModel):
    ok: bool
    result: Any = None
    error: ErrorBody | None = None

    @classmethod
    def failure(cls, code: ErrorCode | str, message: str) -> Reply:
        return cls(ok=False, error=ErrorBody(code=str(code), message=message))


def encode_success(result: Any) -> bytes:
    """Fast path for the hot loop: no model is built for a successful reply."""
    return codec.dumps({"ok": True, "result": result})


def encode_failure(code: ErrorCode | str, message: str) -> bytes:
    return codec.dumps({"ok": False, "error": {"code": str(code), "message": message}})


def decode(body: bytes) -> Reply:
    """Parse a reply body; a body that is not a reply becomes a worker_error failure."""
    try:
        return Reply.model_validate(codec.loads(body))
    except ValueError as exc:
        return Reply.failure(ErrorCode.WORKER_ERROR, f"malformed reply: {exc}")
