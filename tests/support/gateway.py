"""Start real `rpcfleet gateway` processes (uvicorn over HTTP) for end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from rpcfleet.broker import free_port
from tests.support.fleet import StartWorker
from tests.support.processes import RPCFLEET, Proc, child_env, exited
from tests.support.waiting import wait_for


@dataclass
class Gateway:
    proc: Proc
    url: str

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)  # type: ignore[arg-type]

    def async_client(self, **kwargs: object) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=60, **kwargs)  # type: ignore[arg-type]


StartGateway = Callable[..., Gateway]


def error_code(response: httpx.Response) -> tuple[int, str]:
    """(HTTP status, error code) of an error answer."""
    return response.status_code, response.json()["error"]["code"]


def wait_ready(gateway: Gateway, timeout: float = 30.0, status: int = 200) -> None:
    last: list[object] = [None]

    def answers() -> bool:
        try:
            last[0] = httpx.get(f"{gateway.url}/readyz", timeout=2).status_code
        except httpx.HTTPError as exc:
            last[0] = exc
        return last[0] == status

    wait_for(answers, timeout=timeout, what=f"/readyz to answer {status}",
             abort=lambda: exited(gateway.proc),
             detail=lambda: f"last: {last[0]}\n{gateway.proc.output()}")


def gateway_factory(amqp_url: str, tmp_path: Path) -> Iterator[StartGateway]:
    started: list[Gateway] = []

    def start(*, workers: int = 1, ready: bool = True, amqp: str | None = None,
              inside: tuple[str, ...] = (), address: str = "127.0.0.1",
              **settings: object) -> Gateway:
        """`inside` and `address`: a gateway on another host (tests/support/netns.py)."""
        port = free_port()
        if inside:
            settings.setdefault("host", address)
        settings.setdefault("state_dir", tmp_path / f"gateway-{len(started)}")
        env = child_env(amqp or amqp_url, **settings)
        argv = [*inside, *RPCFLEET, "gateway", "--port", str(port), "--workers", str(workers)]
        proc = Proc(argv, env, tmp_path / f"gateway-{len(started)}.log")
        gateway = Gateway(proc, f"http://{address}:{port}")
        started.append(gateway)
        if ready:
            wait_ready(gateway)
        return gateway

    yield start
    for gateway in reversed(started):
        gateway.proc.stop()


@pytest.fixture
def start_gateway(amqp_url: str, tmp_path: Path) -> Iterator[StartGateway]:
    yield from gateway_factory(amqp_url, tmp_path)


@pytest.fixture
def gateway(start_worker: StartWorker, start_gateway: StartGateway) -> Gateway:
    """What most scenarios open with: the test pool's worker, its consumers up, and a gateway in
    front of it, ready."""
    start_worker()
    return start_gateway()


def wait_for_workers(gateway: Gateway, count: int, timeout: float = 20.0,
                     headers: dict[str, str] | None = None) -> list[dict[str, object]]:
    """Until the gateway's fleet view shows `count` live workers (beats arrived; a consumer
    leaving for good is listed `leaving` until it exits, and not counted here)."""
    def shown() -> tuple[list[dict[str, object]]] | None:
        response = httpx.get(f"{gateway.url}/v1/workers", headers=headers, timeout=5)
        assert response.status_code == 200, response.text  # a gateway with keys: pass them
        entries: list[dict[str, object]] = response.json()
        live = [entry for entry in entries if not entry.get("leaving")]
        return (live,) if len(live) == count else None  # truthy even when empty

    return wait_for(shown, timeout=timeout, what=f"the fleet view to show {count} workers")[0]
