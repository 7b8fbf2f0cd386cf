"""A real HTTP callback receiver on loopback: records every request, answers from a script, or
misbehaves on purpose (hangs, trickles its answer a byte at a time)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

ANSWER, HANG, TRICKLE = "answer", "hang", "trickle"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    mode: str = ANSWER  # how it was treated
    status: int | None = None  # what it was answered (None: hung, or trickled too slowly)


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answered in order, then 204
    slow_paths: dict[str, float] = field(default_factory=dict)  # path -> seconds to stall
    mode: str = ANSWER  # ANSWER, HANG (hold it `hang_s`, then drop), TRICKLE (a byte per 0.3 s)
    hang_s: float = 30.0
    redirect_to: str | None = None  # the Location of 3xx answers (default: its own /elsewhere)

    def next_status(self) -> int:
        return self.statuses.pop(0) if self.statuses else 204


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hanging request does not hold up the shutdown


@contextmanager
def serving(port: int = 0) -> Iterator[Receiver]:
    """A receiver on 127.0.0.1:`port` (0: any free port) until the block ends."""
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            body = self.rfile.read(length)
            target = box[0]
            seen = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                            target.mode)
            target.requests.append(seen)
            if seen.mode == HANG:
                time.sleep(target.hang_s)  # holds the request, then drops it unanswered
                self.close_connection = True
                return
            stall = target.slow_paths.get(self.path)
            if stall:
                time.sleep(stall)  # a slow receiver, as seen from the sender
            status = 200 if seen.mode == TRICKLE else target.next_status()
            answer = f"HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\n"
            if 300 <= status < 400:
                answer += f"Location: {target.redirect_to or target.url + '/elsewhere'}\r\n"
            answer += "Connection: close\r\n\r\n"
            try:
                if seen.mode == TRICKLE:
                    for byte in answer.encode():
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.3)  # the receiver's pace, not a wait for a condition
                else:
                    self.wfile.write(answer.encode())
            except OSError:
                return  # the sender gave up first
            seen.status = status
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(("127.0.0.1", port), Handler)
    box.append(Receiver(f"http://127.0.0.1:{server.server_address[1]}"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving() as running:
        yield running
