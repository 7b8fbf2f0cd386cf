"""What one gateway process takes on at once, and how much of a request it waits for.

- `ConnectionLimit` (ASGI, outermost): at most `max_connections` requests in progress (HTTP
  requests being served, WebSockets open); the next ones get `503 overloaded` with
  `Retry-After` at once, as JSON, instead of queueing: memory stays
  bounded and every request is answered. `/healthz` and `/metrics` are never refused.
- The request body limit, counted as it streams (a chunked body with no Content-Length is refused
  as surely as one that declares its size) and bounded in time (a body that trickles in is cut at
  `body_timeout`: `408 request_timeout`): `read_body` for the sync-call fast path, and `BodyLimit`,
  which reads the body the same way before the app sees it, so an oversize or stalled body is
  answered the same wherever it goes (never a 400 from a framework that half-read it).

A refusal leaves the connection open: uvicorn reads and drops the rest of a body it answered
early until its keep-alive timeout (5 s). Closing at once would make the kernel reset a
connection with unread data, and a client still sending would never read its answer.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import (
    CallerGone,
    GatewayError,
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
)
from gateway.responses import send_close, send_error

NEVER_REFUSED = frozenset({"/healthz", "/metrics"})  # probes and scrapes see an overload


class ConnectionLimit:
    def __init__(self, app: ASGIApp, max_connections: int, retry_after: int) -> None:
        self.app = app
        self.max_connections = max_connections
        self.retry_after = retry_after
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in NEVER_REFUSED:
            await self.app(scope, receive, send)
            return
        if self.active >= self.max_connections:
            await self._refuse(scope, receive, send)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = (f"this gateway process serves {self.max_connections} requests at once "
                   "(RPCFLEET_MAX_CONNECTIONS); retry shortly")
        if scope["type"] == "websocket":  # accepted first: a browser sees the close code
            await send_close(send, Overloaded(message), accept=receive)
            return
        await send_error(send, Overloaded(message), self.retry_after)


async def read_body(receive: Receive, declared: bytes | None, limit: int,
                    timeout: float) -> bytes:
    """The whole body, or PayloadTooLarge as soon as it passes `limit` bytes, or RequestTimeout
    when it has not all arrived within `timeout` seconds, or CallerGone when the caller hung
    up before sending all of it (a part is not the request it meant: nothing is acted on, and
    its Idempotency-Key stays free for the retry)."""
    too_large = PayloadTooLarge(f"the request body is over the limit of {limit} bytes")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise CallerGone("the caller hung up before its body arrived")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout:g} s "
                             f"({size} bytes received)") from None
    return b"".join(chunks)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        try:
            body = await read_body(receive, declared, self.max_bytes, self.timeout)
        except GatewayError as exc:
            await send_error(send, exc, 0)  # uvicorn drops the rest of the body (see above)
            return
        except CallerGone:
            return  # nobody to answer
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # then the disconnect, when it comes

        await self.app(scope, replay, send)
