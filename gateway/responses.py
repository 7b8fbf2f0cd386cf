"""Raw ASGI answers for the layers in front of FastAPI (the connection and body limits, the
browser guard, the sync-call fast path): the JSON envelope of `gateway.errors.render`, sent
without the framework."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import Send

from gateway.errors import render

JSON_CONTENT = (b"content-type", b"application/json")


async def send_json(send: Send, status: int, payload: bytes,
                    headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [JSON_CONTENT, (b"content-length", str(len(payload)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": payload})


async def send_error(send: Send, exc: BaseException, retry_after: int) -> None:
    """`exc` as the error envelope, with its headers."""
    status, payload, headers = render(exc, retry_after)
    await send_json(send, status, payload,
                    [(name.lower().encode(), value.encode()) for name, value in headers.items()])
