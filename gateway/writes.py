"""One write per response: uvicorn's httptools protocol writes a response's status line and
headers, then its body, as two writes to the socket (two `write` system calls, two TCP segments a
response, measured with strace under wrk). Both come from one step of the request's task
(Starlette sends the start and the body back to back, and neither send waits unless the client
stops reading), so the transport here gathers what is written within one turn of the event loop
and hands it to the socket once, at the end of that turn. Nothing is held past it (a streamed
response whose producer yields to the loop between parts sends each part in its turn), nor past
`GATHER_MAX` bytes (a large body, or a producer that never yields, is written as it comes, and
the socket's flow control sees it). Whatever acts on the socket (closing, ending the stream,
asking what is buffered) writes what is gathered first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

GATHER_MAX = 65536  # bytes gathered before they are written at once


class GatheringTransport:
    """A transport that writes what one loop turn wrote to it as one write at the turn's end."""

    __slots__ = ("_loop", "_parts", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._parts: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._parts:
            self._loop.call_soon(self.flush)
        self._parts.append(bytes(data))
        self._size += len(data)
        if self._size >= GATHER_MAX:
            self.flush()

    def writelines(self, parts: Any) -> None:
        for part in parts:
            self.write(part)

    def flush(self) -> None:
        if not self._parts:
            return
        data = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        self._parts.clear()
        self._size = 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        self.flush()
        return self._transport.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.flush()
        self._transport.set_write_buffer_limits(high, low)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._parts.clear()
        self._size = 0
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:  # the rest of the transport, as it is
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a `GatheringTransport` (`rpcfleet gateway` runs it)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        gathering = GatheringTransport(transport, asyncio.get_running_loop())
        super().connection_made(gathering)  # type: ignore[arg-type]
