"""The fault suite's stage: a ledger fleet (workers and a gateway) to put under load, and the
rhythms faults arrive in."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.fleet import StartWorker
from tests.support.gateway import StartGateway, wait_for_workers
from tests.support.waiting import wait_for

LOAD_S = 12.0  # seconds of load per scenario
HEARTBEAT_S = 5


def fleet(start_worker: StartWorker, start_gateway: StartGateway, ledger: Path,
           processes: int = 2, prefetch: int = 2, **worker_settings: object) -> str:
    start_worker("tests.pools.ledger:pool", pool="ledger", processes=processes,
                 prefetch=prefetch, test_ledger=ledger, heartbeat=HEARTBEAT_S, **worker_settings)
    gateway = start_gateway(rpc_timeout_default=10, publish_timeout=2)
    wait_for_workers(gateway, processes)
    return gateway.url


def in_background(work: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=work)
    thread.start()
    return thread


def every(seconds: float, until: float, fault: object) -> threading.Thread:
    def run() -> None:
        while time.monotonic() + seconds < until:
            time.sleep(seconds)  # the fault's rhythm, not a wait for a condition
            fault()  # type: ignore[operator]

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def time_to_answer(http: httpx.Client, deadline: float = 30) -> float:
    """Seconds until a sync call is answered again (fails past `deadline`)."""
    started = time.monotonic()
    wait_for(lambda: http.post("/v1/rpc/effect?timeout=2", json={"value": "after", "ms": 1})
             .status_code == 200, timeout=deadline, interval=0.2,
             what="sync calls to be answered again")
    return time.monotonic() - started


def consumer_pids(url: str) -> list[int]:
    return [int(entry["pid"]) for entry in httpx.get(f"{url}/v1/workers", timeout=5).json()]
