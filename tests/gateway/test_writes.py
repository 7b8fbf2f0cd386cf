"""One write per response (gateway/writes.py): what one turn of the loop writes leaves as one
write; nothing is held past that turn; closing writes what is gathered first. The socket side is
a recording stand-in for uvicorn's transport; the last test serves real HTTP through it."""

from __future__ import annotations

import asyncio
import socket

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from gateway.writes import GATHER_MAX, GatheringTransport, OneWriteHttpToolsProtocol
from rpcfleet.broker import free_port
from tests.support.waiting import async_wait_for


class Recording:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.eof = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def write_eof(self) -> None:
        self.eof = True

    def abort(self) -> None:
        self.aborted = True
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 80) if name == "sockname" else default


def closing_request(port: int) -> bytes:
    """A request asking the server to close after its response: all of it arrives first."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"GET /plain HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        received = b""
        while chunk := raw.recv(65536):
            received += chunk
    return received


async def next_turn() -> None:
    await asyncio.sleep(0)


async def test_what_one_turn_writes_leaves_as_one_write_at_the_end_of_that_turn() -> None:
    sock = Recording()
    transport = GatheringTransport(sock, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"ok")
    assert sock.writes == []
    await next_turn()
    assert sock.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]


async def test_writes_of_different_turns_are_not_held_for_each_other() -> None:
    sock = Recording()
    transport = GatheringTransport(sock, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"first")
    await next_turn()
    transport.write(memoryview(b"second"))
    await next_turn()
    assert sock.writes == [b"first", b"second"]


async def test_closing_writes_what_is_gathered_first_and_aborting_drops_it() -> None:
    loop = asyncio.get_running_loop()
    closed, aborted = Recording(), Recording()
    gathering = GatheringTransport(closed, loop)  # type: ignore[arg-type]
    gathering.write(b"last words")
    gathering.close()
    assert closed.writes == [b"last words"] and closed.closed
    dropping = GatheringTransport(aborted, loop)  # type: ignore[arg-type]
    dropping.write(b"never sent")
    dropping.abort()
    await next_turn()
    assert aborted.writes == [] and aborted.aborted
    assert gathering.get_extra_info("sockname") == ("127.0.0.1", 80)


async def test_a_large_body_is_written_as_it_comes_and_ending_the_stream_writes_first() -> None:
    sock = Recording()
    transport = GatheringTransport(sock, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"head")
    transport.write(b"x" * GATHER_MAX)
    assert sock.writes == [b"head" + b"x" * GATHER_MAX]  # at once: not held for the turn
    transport.writelines([b"ta", b"il"])
    transport.write_eof()
    assert sock.writes[1:] == [b"tail"] and sock.eof


async def test_real_http_through_the_protocol_plain_and_streamed_responses() -> None:
    app = FastAPI()

    @app.get("/plain")
    async def plain() -> dict[str, str]:
        return {"answer": "one write"}

    @app.get("/streamed")
    async def streamed() -> StreamingResponse:
        async def parts():  # type: ignore[no-untyped-def]
            for part in (b"a", b"b", b"c"):
                yield part
                await asyncio.sleep(0.01)
        return StreamingResponse(parts())

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           http=OneWriteHttpToolsProtocol, lifespan="off"))
    serving = asyncio.create_task(server.serve())
    try:
        await async_wait_for(lambda: server.started, what="the server to start")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(3):  # one kept-alive connection, several responses
                response = await http.get("/plain")
                assert response.status_code == 200
                assert response.json() == {"answer": "one write"}
            assert (await http.get("/streamed")).content == b"abc"
        received = await asyncio.to_thread(closing_request, port)
        assert received.startswith(b"HTTP/1.1 200 OK") and received.endswith(b'"one write"}')
    finally:
        server.should_exit = True
        await serving
