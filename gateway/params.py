"""What the edge checks in a request before anything is published: the method's name, a body
that must be a JSON object, the timeout asked for, the caller's trace context. Shared by sync
calls and job submissions; raises the gateway's errors, renders nothing."""

from __future__ import annotations

import re
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


# W3C Trace Context: `traceparent` is version-traceid-parentid-flags (55 characters for
# version 00, longer only in later versions), `tracestate` at most 32 members, which vendors
# may cut at 512 characters. What does not fit is ignored, as the spec says a receiver does:
# a header of any size would otherwise travel in the AMQP message, and one past the broker's
# frame size closes the gateway's connection, failing every call on it.
TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-[^\s]{0,200})?")
TRACESTATE_MAX = 512


def trace_context(header: Callable[[str], str | None]) -> dict[str, str] | None:
    """The caller's W3C trace context (traceparent, tracestate), to travel with its request;
    none when its traceparent is not one (a tracestate alone means nothing)."""
    parent = header("traceparent")
    if parent is None or len(parent) > 256 or not TRACEPARENT.fullmatch(parent):
        return None
    found = {"traceparent": parent}
    state = header("tracestate")
    if state is not None and len(state) <= TRACESTATE_MAX:
        found["tracestate"] = state
    return found
