"""What the edge checks in a request before anything is published: the method's name, a body
that must be a JSON object, the timeout asked for, the caller's trace context. Shared by sync
calls and job submissions; raises the gateway's errors, renders nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.errors import BadRequest, UnknownMethod
from protocol import codec, names


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
