"""A TCP proxy between a component and the broker that the test controls: added latency, stalls
(a partition: nothing passes and nobody is told, not even of a close) and cuts mid-frame (half
of the next chunk forwarded, then both sides reset). It runs its own event loop in a thread;
its controls may be called from any thread."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

CUT_FALLBACK_S = 2.0  # a connection with nothing to forward is reset after this anyway


@dataclass(eq=False)  # each link is itself: hashed by identity
class _Link:
    writers: tuple[asyncio.StreamWriter, asyncio.StreamWriter]
    cut: asyncio.Event = field(default_factory=asyncio.Event)

    def reset(self) -> None:
        for writer in self.writers:
            sock = writer.get_extra_info("socket")
            if sock is not None:  # SO_LINGER 0: close with a RST, as a dropped link looks
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()


class Proxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.latency = 0.0
        self.connections = 0  # accepted so far
        self.cuts = 0  # connections reset by cut()
        self._loop = asyncio.new_event_loop()
        self._links: set[_Link] = set()
        self._flowing: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    # -- controls (any thread) ------------------------------------------------------------------
    def set_latency(self, seconds: float) -> None:
        self.latency = seconds  # read by the pumps per chunk

    def stall(self) -> None:
        self._loop.call_soon_threadsafe(self._gate().clear)

    def resume(self) -> None:
        self._loop.call_soon_threadsafe(self._gate().set)

    def cut(self) -> None:
        """Reset every connection mid-frame: each forwards half of its next chunk, then both of
        its sides are reset."""
        def mark() -> None:
            for link in list(self._links):
                link.cut.set()
        self._loop.call_soon_threadsafe(mark)

    # -- the proxy ------------------------------------------------------------------------------
    def _gate(self) -> asyncio.Event:
        assert self._flowing is not None
        return self._flowing

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
        for link in list(self._links):
            link.reset()
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)  # the loop closes with no task

    async def _accept(self, client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await self._gate().wait()  # a partitioned link does not even connect
        try:
            broker_reader, broker_writer = await asyncio.open_connection(
                "127.0.0.1", self.upstream_port)
        except OSError:
            client_writer.transport.abort()
            return
        link = _Link((client_writer, broker_writer))
        self._links.add(link)
        pumps = [asyncio.ensure_future(self._pump(client_reader, broker_writer, link)),
                 asyncio.ensure_future(self._pump(broker_reader, client_writer, link))]
        fallback = asyncio.ensure_future(self._cut_fallback(link))
        try:
            await asyncio.wait(pumps)  # each direction ends on its EOF, or on a reset
        finally:
            fallback.cancel()
            self._links.discard(link)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    link: _Link) -> None:
        try:
            while True:
                data = await reader.read(65536)
                await self._gate().wait()  # stalled: hold it, and hold the EOF too
                if link.cut.is_set():
                    if data:
                        writer.write(data[:max(1, len(data) // 2)])
                    self._reset(link)
                    return
                if link not in self._links:
                    return  # the other direction reset the link
                if not data:
                    writer.close()
                    return
                if self.latency:
                    await asyncio.sleep(self.latency)  # the injected latency of this chunk
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            self._reset(link)  # one side reset: so is the other, as a real link would be

    async def _cut_fallback(self, link: _Link) -> None:
        await link.cut.wait()
        await asyncio.sleep(CUT_FALLBACK_S)  # the pumps had their chance to cut mid-frame
        self._reset(link)

    def _reset(self, link: _Link) -> None:
        if link in self._links:
            self._links.discard(link)
            self.cuts += link.cut.is_set()
            link.reset()

    def start(self) -> Proxy:
        self._thread.start()
        self._ready.wait(timeout=10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


@contextmanager
def proxied(upstream_port: int) -> Iterator[Proxy]:
    proxy = Proxy(upstream_port).start()
    try:
        yield proxy
    finally:
        proxy.stop()
