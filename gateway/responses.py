"""How an error leaves the gateway, HTTP or WebSocket: the JSON envelope of
`gateway.errors.render`, or a close with `gateway.errors.render_close`'s code and reason. Raw ASGI
for the layers in front of FastAPI (the connection and body limits, the browser guard, the fast
path); `close_socket` for the app's own error boundary (`gateway.app`)."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import Receive, Send
from starlette.websockets import WebSocket, WebSocketState

from gateway.errors import render, render_close

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


async def send_close(send: Send, exc: BaseException, *, accept: Receive | None = None) -> None:
    """Close a WebSocket for `exc`. With `accept` (its receive), accepted first so that a
    browser reads the close code; without, refused at the handshake (a browser sees a 403)."""
    if accept is not None:
        await accept()  # websocket.connect
        await send({"type": "websocket.accept"})
    code, reason = render_close(exc)
    await send({"type": "websocket.close", "code": code, "reason": reason})


async def close_socket(websocket: WebSocket, exc: BaseException) -> None:
    """Close an app's WebSocket for `exc`, accepting it first if it is still being opened."""
    if websocket.application_state == WebSocketState.DISCONNECTED:
        return
    if websocket.application_state == WebSocketState.CONNECTING:
        await websocket.accept()
    code, reason = render_close(exc)
    await websocket.close(code=code, reason=reason)
