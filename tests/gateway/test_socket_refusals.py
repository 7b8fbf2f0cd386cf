"""Every error a WebSocket meets leaves one way: closed with the code a browser can read and the
reason "code: message", rendered by the same code as the HTTP error envelope
(`gateway.errors.render_close`). The layers in front of the app refuse sockets here (the
connection limit, the keyless gateway's browser guard); the app's own sockets are closed by its
error boundary (tests/jobs/test_job_events.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from gateway.browsers import BrowserGuard
from gateway.errors import NotFound, Overloaded, Unauthorized, render_close
from gateway.limits import ConnectionLimit


def _socket(path: str = "/v1/jobs/ws", headers: list[tuple[bytes, bytes]] | None = None
            ) -> Scope:
    return {"type": "websocket", "path": path, "headers": headers or [(b"host", b"localhost")],
            "scheme": "ws", "query_string": b""}


async def _served(app: Any, scope: Scope) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def _never(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("a refused socket reached the app")


def test_a_socket_over_the_connection_limit_is_accepted_then_closed_try_again() -> None:
    limit = ConnectionLimit(_never, max_connections=0, retry_after=1)
    sent = asyncio.run(_served(limit, _socket()))
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.close"]
    assert sent[1]["code"] == 1013
    assert sent[1]["reason"].startswith("overloaded: this gateway process serves 0 requests")


def test_a_cross_site_socket_to_a_keyless_gateway_is_refused_at_the_handshake() -> None:
    guard = BrowserGuard(_never, enabled=True, allowed_hosts=[], allowed_origins=[],
                         bind_host="127.0.0.1")
    scope = _socket(headers=[(b"host", b"localhost"), (b"origin", b"https://evil.example")])
    sent = asyncio.run(_served(guard, scope))
    assert [m["type"] for m in sent] == ["websocket.close"]  # a browser sees a 403
    assert sent[0]["code"] == 1008 and sent[0]["reason"].startswith("forbidden: requests from")


def test_each_error_closes_with_its_code_and_a_reason_within_a_close_frame() -> None:
    assert render_close(Unauthorized("no key"))[0] == 1008
    assert render_close(NotFound("no such job"))[0] == 4404
    assert render_close(Overloaded("busy"))[0] == 1013
    assert render_close(RuntimeError("a bug")) == (1011, "internal_error: the gateway failed: "
                                                         "RuntimeError")
    code, reason = render_close(NotFound("é" * 200))  # two bytes a character
    assert code == 4404 and len(reason.encode()) <= 123 and reason.startswith("not_found: é")
