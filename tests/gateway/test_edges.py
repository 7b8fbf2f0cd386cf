"""The gateway's edges: keys, body limits, readiness, concurrency across processes, docs."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from rpcfleet.broker import LocalBroker, free_port
from tests.support.fleet import StartWorker, worker_factory
from tests.support.gateway import (
    Gateway,
    StartGateway,
    error_code,
    gateway_factory,
    wait_for_workers,
    wait_ready,
)
from tests.support.waiting import wait_for


def test_api_keys_guard_calls_and_admin_keys_guard_the_fleet(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker()
    gateway = start_gateway(api_keys="caller-key", admin_keys="admin-key")
    caller = {"Authorization": "Bearer caller-key"}
    admin = {"Authorization": "Bearer admin-key"}
    with gateway.client() as http:
        assert error_code(http.post("/v1/rpc/echo", json={})) == (401, "unauthorized")
        wrong = http.post("/v1/rpc/echo", json={}, headers={"Authorization": "Bearer nope"})
        assert error_code(wrong) == (401, "unauthorized")
        assert http.post("/v1/rpc/echo", json={"a": 1}, headers=caller).status_code == 200
        assert http.post("/v1/rpc/echo", json={"a": 1}, headers=admin).status_code == 200
        assert error_code(http.get("/v1/workers", headers=caller)) == (403, "forbidden")
        assert error_code(http.get("/v1/workers")) == (401, "unauthorized")
        assert http.get("/v1/workers", headers=admin).status_code == 200
        assert error_code(http.get("/ui", headers=caller)) == (403, "forbidden")
        for open_route in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
            assert http.get(open_route).status_code == 200, open_route


def test_admin_keys_alone_guard_every_route_but_the_open_ones(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    """A gateway with keys in use opens nothing but health, metrics and docs: with admin keys
    alone, calls and jobs take the admin key too (docs/http-api.md says why this reading)."""
    start_worker()
    gateway = start_gateway(admin_keys="admin-key")
    admin = {"Authorization": "Bearer admin-key"}
    with gateway.client() as http:
        wait_for_workers(gateway, 1, headers=admin)
        keyless = http.post("/v1/rpc/echo", json={"a": 1})
        keyless_job = http.post("/v1/jobs/echo", json={"params": {}})
        as_admin = http.post("/v1/rpc/echo", json={"a": 1}, headers=admin)
        health = http.get("/healthz")
    assert error_code(keyless) == (401, "unauthorized")
    assert error_code(keyless_job) == (401, "unauthorized")
    assert as_admin.status_code == 200 and health.status_code == 200


def test_bodies_over_the_limit_are_refused_with_or_without_content_length(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker()
    gateway = start_gateway(max_body_bytes=1000)
    big = b'{"pad": "' + b"x" * 2000 + b'"}'

    def chunked() -> object:
        yield big[:600]
        yield big[600:]

    with gateway.client() as http:
        declared = http.post("/v1/rpc/echo", content=big,
                             headers={"content-type": "application/json"})
        streamed = http.post("/v1/rpc/echo", content=chunked())  # type: ignore[arg-type]
        fits = http.post("/v1/rpc/echo", json={"pad": "x" * 100})
        prefetch = http.put("/v1/pools/basic/prefetch", content=big)
    assert "content-length" not in {k.lower() for k in streamed.request.headers}
    assert error_code(declared) == (413, "payload_too_large")
    assert error_code(streamed) == (413, "payload_too_large")
    assert error_code(prefetch) == (413, "payload_too_large")
    assert fits.status_code == 200


@pytest.mark.slow  # ~20-70 s: the fast step's budget (CI runs it in the slow step)
def test_a_thousand_concurrent_calls_across_two_gateway_processes_each_get_their_own_reply(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker(processes=2, prefetch=20)
    gateway = start_gateway(workers=2)

    async def burst() -> list[tuple[int, object]]:
        limits = httpx.Limits(max_connections=200)
        async with gateway.async_client(limits=limits) as http:
            async def one(i: int) -> tuple[int, object]:
                response = await http.post("/v1/rpc/echo", json={"i": i, "tag": f"call-{i}"})
                assert response.status_code == 200, response.text
                return i, response.json()["result"]

            return await asyncio.gather(*(one(i) for i in range(1000)))

    answers = asyncio.run(burst())
    assert len(answers) == 1000
    assert all(result == {"i": i, "tag": f"call-{i}"} for i, result in answers)
    # /metrics sums both processes, whichever of them answers the scrape.
    for _ in range(4):
        with gateway.client() as http:  # a new connection each time
            text = http.get("/metrics").text
        assert 'rpcfleet_calls_total{code="ok",method="echo"} 1000.0' in text
        assert "rpcfleet_calls_in_flight 0.0" in text


def test_readiness_flips_when_the_broker_stops_and_comes_back(tmp_path: Path) -> None:
    node = LocalBroker(directory=tmp_path / "rabbit", port=free_port(), name="flip")
    node.start()
    try:
        gateways = gateway_factory(node.amqp_url, tmp_path)
        start = next(gateways)
        workers = worker_factory(node.amqp_url, tmp_path)
        next(workers)(beat_interval=1)
        gateway = start()
        with gateway.client() as http:
            assert http.post("/v1/rpc/echo", json={"x": 1}).status_code == 200
            marker = tmp_path / "running"
            pending: list[httpx.Response] = []
            caller = threading.Thread(target=lambda: pending.append(http.post(
                "/v1/rpc/sleep?timeout=30", json={"seconds": 10, "marker": str(marker)})))
            caller.start()
            wait_for(marker.exists, what="the call to be running")
            stopped = time.monotonic()
            node.stop_app()
            caller.join(timeout=30)
            # The call waiting for its reply fails as the channel closes, not at its deadline.
            assert error_code(pending[0]) == (503, "unavailable")
            assert time.monotonic() - stopped < 8  # stop_app itself takes a few seconds
            wait_ready(gateway, status=503)
            down = http.post("/v1/rpc/echo", json={"x": 2})
            assert error_code(down) == (503, "overloaded")
            node.start_app()
            wait_ready(gateway, timeout=60)
            last: list[httpx.Response] = []

            def succeeds() -> bool:
                last.append(http.post("/v1/rpc/echo?timeout=2", json={"x": 3}))
                return last[-1].status_code == 200

            try:
                wait_for(succeeds, timeout=60, what="calls to succeed after the broker is back")
            except AssertionError:
                raise AssertionError(f"{last[-1].text}\n{gateway.proc.output()[-3000:]}\n"
                                     f"{(tmp_path / 'worker-0.log').read_text()[-3000:]}"
                                     ) from None
    finally:
        for factory in (gateways, workers):
            next(factory, None)
        node.stop()


def test_metrics_count_calls_and_show_the_fleet(gateway: Gateway) -> None:
    wait_for_workers(gateway, 1)
    with gateway.client() as http:
        http.post("/v1/rpc/echo", json={})
        http.post("/v1/rpc/boom", json={})
        text = wait_for(lambda: _metrics_with_queue(http), what="queue stats in /metrics")
    assert 'rpcfleet_calls_total{code="ok",method="echo"} 1.0' in text
    assert 'rpcfleet_calls_total{code="worker_error",method="boom"} 1.0' in text
    assert "rpcfleet_call_seconds_bucket" in text
    assert 'rpcfleet_worker_prefetch{pool="basic",worker="' in text
    assert 'rpcfleet_queue_consumers{pool="basic"} 1.0' in text


def _metrics_with_queue(http: httpx.Client) -> str | None:
    text = http.get("/metrics").text
    return text if "rpcfleet_queue_consumers{" in text else None


def test_a_reply_after_the_deadline_is_counted_late_and_dropped(
    gateway: Gateway, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    with gateway.client() as http:
        late = http.post("/v1/rpc/sleep?timeout=0.5", json={"seconds": 1.5, "marker": str(marker)})
        assert error_code(late) == (504, "deadline_exceeded")
        assert marker.exists()  # it started in time, so it runs to the end and replies late
        text = wait_for(lambda: _metric_line(http, "rpcfleet_late_replies_total"),
                        what="the late reply to be counted")
        after = http.post("/v1/rpc/echo", json={"next": 1})
    assert text == "rpcfleet_late_replies_total 1.0"
    assert after.json()["result"] == {"next": 1}  # the late reply went to nobody else


def _metric_line(http: httpx.Client, name: str) -> str | None:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(name + " ") and not line.endswith(" 0.0"):
            return line
    return None


def test_without_keys_the_gateway_binds_loopback_and_warns(
    start_gateway: StartGateway
) -> None:
    gateway = start_gateway()
    wait_for(lambda: "every route is open" in gateway.proc.output(), what="the warning")
    assert "127.0.0.1" in gateway.proc.output()
    with socket.socket() as probe:
        probe.settimeout(1)
        assert probe.connect_ex(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1]))) == 0


def test_sigterm_lets_a_call_in_flight_finish_then_the_gateway_exits(
    gateway: Gateway, tmp_path: Path
) -> None:
    marker = tmp_path / "running"
    answers: list[httpx.Response] = []
    with gateway.client() as http:
        caller = threading.Thread(target=lambda: answers.append(http.post(
            "/v1/rpc/sleep", json={"seconds": 1.5, "marker": str(marker)})))
        caller.start()
        wait_for(marker.exists, what="the call to be running")
        gateway.proc.signal(signal.SIGTERM)  # a rolling deploy stops this gateway
        caller.join(timeout=30)
    assert answers[0].status_code == 200, answers[0].text
    assert answers[0].json()["result"]["attempt"] == 1
    # uvicorn re-raises the signal once it has shut down cleanly: the exit reads as SIGTERM.
    assert gateway.proc.wait(timeout=20) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in gateway.proc.output()
    with pytest.raises(httpx.ConnectError):  # no new calls once it has stopped
        httpx.post(f"{gateway.url}/v1/rpc/echo", json={}, timeout=2)
