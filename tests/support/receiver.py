"""A real HTTP callback receiver on loopback: records every request, answers from a script."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answered in order, then 204
    slow_paths: dict[str, float] = field(default_factory=dict)  # path -> seconds to stall

    def next_status(self) -> int:
        return self.statuses.pop(0) if self.statuses else 204


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            body = self.rfile.read(length)
            target = box[0]
            stall = target.slow_paths.get(self.path)
            if stall:
                time.sleep(stall)  # a slow receiver, as seen from the sender
            target.requests.append(Received(self.path, {k.lower(): v for k, v in
                                                        self.headers.items()}, body))
            status = target.next_status()
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", target.url + "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Receiver(f"http://127.0.0.1:{server.server_address[1]}"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield box[0]
    server.shutdown()
    server.server_close()
