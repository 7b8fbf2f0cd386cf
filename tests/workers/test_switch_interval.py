"""A consumer's handler threads keep the GIL for RPCFLEET_SWITCH_INTERVAL (20 ms unless set)
before its loop may take it: CPython's 5 ms let the loop, woken by the broker, interrupt a
handler of a few ms several times a call (docs/performance.md, "The thread path")."""

from __future__ import annotations

import pytest

from tests.support.fleet import StartWorker
from tests.support.gateway import Gateway, StartGateway


def _switch_interval(gateway: Gateway) -> float:
    with gateway.client() as http:
        response = http.post("/v1/rpc/whoami", json={})
    assert response.status_code == 200, response.text
    interval: float = response.json()["result"]["switch_interval"]
    return interval


def test_a_consumer_switches_threads_every_20_ms_by_default(gateway: Gateway) -> None:
    assert _switch_interval(gateway) == pytest.approx(0.02)  # Python keeps microseconds


def test_the_switch_interval_is_a_worker_setting(start_worker: StartWorker,
                                                 start_gateway: StartGateway) -> None:
    start_worker(switch_interval=0.05)
    assert _switch_interval(start_gateway()) == pytest.approx(0.05)


def test_a_switch_interval_out_of_range_is_refused_before_any_consumer_starts(
        start_worker: StartWorker) -> None:
    """Named by its variable alone: `rpcfleet worker` has no flag for it."""
    worker = start_worker(switch_interval=0, wait=False)
    assert worker.wait(timeout=30) == 2
    assert worker.output().strip() == (
        "rpcfleet worker: invalid setting RPCFLEET_SWITCH_INTERVAL='0': "
        "Input should be greater than 0")
