"""The request body limit, counted as it streams (a chunked body with no Content-Length is
refused as surely as one that declares its size): `read_body` for the sync-call fast path, and
`BodyLimit`, an ASGI middleware that reads the body the same way before the app sees it, so an
oversize body is a 413 wherever it goes (never a 400 from a framework that half-read it).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import PayloadTooLarge, render


async def read_body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """The whole body, or PayloadTooLarge as soon as it passes `limit` bytes."""
    too_large = PayloadTooLarge(f"the request body is over the limit of {limit} bytes")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        try:
            body = await read_body(receive, declared, self.max_bytes)
        except PayloadTooLarge as exc:
            status, payload, _ = render(exc, 0)
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(payload)).encode()),
                                    (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": payload})
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # then the disconnect, when it comes

        await self.app(scope, replay, send)
