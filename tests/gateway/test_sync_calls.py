"""Sync calls end to end: real uvicorn over HTTP, a real broker, real worker processes."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from protocol import names
from protocol.queues import JOB_PRIORITY_LEVELS
from tests.support.amqp_client import amqp_client
from tests.support.fleet import StartWorker
from tests.support.gateway import Gateway, StartGateway, error_code, wait_for_workers
from tests.support.jobs import occupy, submit, until
from tests.support.rabbit import Vhost, blocked_broker
from tests.support.waiting import wait_for


def test_a_call_returns_the_methods_result_with_its_id(gateway: Gateway) -> None:
    with gateway.client() as http:
        response = http.post("/v1/rpc/greet", json={"name": "ada", "times": 2})
    assert response.status_code == 200
    assert response.json()["result"] == "hello ada hello ada"
    assert len(response.json()["id"]) == 32


def test_integers_of_any_size_travel_exactly_in_calls_and_jobs(gateway: Gateway) -> None:
    """JSON has no integer limit and Python's ints have none: params and results past 64 bits
    come back equal, never as the float nearest them."""
    params = {"big": 2**70, "small": -(2**80), "u64": 2**64 - 1, "nested": [{"n": 10**30}],
              "float": 0.000123456789012345678}
    with gateway.client() as http:
        called = http.post("/v1/rpc/echo", json=params)
        assert called.status_code == 200, called.text
        assert called.json()["result"] == params
        job = submit(http, "echo", params).json()
        assert until(http, job["id"], "succeeded")["result"] == params


def test_every_error_a_sync_call_can_meet_has_its_code_and_status(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker(max_result_bytes=1000)
    gateway = start_gateway()
    wait_for_workers(gateway, 1)
    with gateway.client() as http:
        cases = {
            "not json": http.post("/v1/rpc/echo", content=b"{oops"),
            "not an object": http.post("/v1/rpc/echo", json=[1, 2]),
            "bad params": http.post("/v1/rpc/greet", json={"times": "x"}),
            "unknown method": http.post("/v1/rpc/no_such_method", json={}),
            "unknown route": http.get("/v1/nothing"),
            "wrong verb": http.get("/v1/rpc/echo"),
            "wrong verb elsewhere": http.post("/v1/workers"),
            "handler raised": http.post("/v1/rpc/boom", json={"why": "because"}),
            "result too large": http.post("/v1/rpc/big", json={"size": 5000}),
            "bad timeout": http.post("/v1/rpc/echo?timeout=soon", json={}),
        }
        started = time.monotonic()
        late = http.post("/v1/rpc/sleep?timeout=0.5", json={"seconds": 3})
        waited = time.monotonic() - started
    assert error_code(cases["not json"]) == (422, "invalid_params")
    assert error_code(cases["not an object"]) == (422, "invalid_params")
    assert error_code(cases["bad params"]) == (422, "invalid_params")
    assert error_code(cases["unknown method"]) == (404, "unknown_method")
    assert error_code(cases["unknown route"]) == (404, "not_found")
    assert error_code(cases["wrong verb"]) == (405, "method_not_allowed")
    assert cases["wrong verb"].headers["allow"] == "POST"  # RFC 9110: a 405 says what is
    assert error_code(cases["wrong verb elsewhere"]) == (405, "method_not_allowed")
    assert "GET" in cases["wrong verb elsewhere"].headers["allow"].split(", ")
    assert error_code(cases["handler raised"]) == (500, "worker_error")
    assert cases["handler raised"].json()["error"]["message"] == "RuntimeError: boom: because"
    assert error_code(cases["result too large"]) == (500, "result_too_large")
    assert error_code(cases["bad timeout"]) == (422, "invalid_params")
    assert error_code(late) == (504, "deadline_exceeded")
    assert 0.4 < waited < 2.0
    assert "id" in late.json()["error"]


def test_a_time_limit_is_a_500_time_limit(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker("tests.pools.limits:pool", pool="limits")
    gateway = start_gateway()
    with gateway.client() as http:
        response = http.post("/v1/rpc/slow", json={"seconds": 30})
    assert error_code(response) == (500, "time_limit")


def test_a_pool_with_no_live_consumer_answers_no_workers_at_once(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    worker = start_worker()
    gateway = start_gateway()
    wait_for_workers(gateway, 1)
    worker.stop()
    wait_for_workers(gateway, 0)  # three missed beats
    with gateway.client() as http:
        started = time.monotonic()
        response = http.post("/v1/rpc/echo?timeout=20", json={})
    assert error_code(response) == (503, "no_workers")
    assert response.headers["retry-after"] == "1"
    assert time.monotonic() - started < 1.0


def test_a_full_queue_refuses_the_publish_and_the_call_is_overloaded(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    vhost.management("PUT", f"/api/policies/{vhost.name}/small", {
        "pattern": r"^rpcfleet\.pool\.basic$", "apply-to": "queues",
        "definition": {"max-length": 1, "overflow": "reject-publish"}})
    start_worker()
    gateway = start_gateway()
    marker = tmp_path / "started"
    with gateway.client() as http, httpx.Client(base_url=gateway.url, timeout=30) as other:
        import threading

        busy = threading.Thread(target=http.post, args=("/v1/rpc/sleep",),
                                kwargs={"json": {"seconds": 3, "marker": str(marker)}})
        busy.start()
        wait_for(marker.exists, what="the worker to be busy")
        filler = threading.Thread(target=other.post, args=("/v1/rpc/echo",),
                                  kwargs={"json": {"fill": 1}})
        filler.start()
        wait_for(lambda: vhost.queue_counts("rpcfleet.pool.basic")[0] == 1,
                 what="the queue to be full")
        with httpx.Client(base_url=gateway.url, timeout=30) as third:
            started = time.monotonic()
            refused = third.post("/v1/rpc/echo", json={"one": "too many"})
            took = time.monotonic() - started
        busy.join()
        filler.join()
    assert error_code(refused) == (503, "overloaded")
    assert "id" not in refused.json()["error"]  # definite: nothing enqueued, safe to send again
    assert refused.headers["retry-after"] == "1"
    assert took < 1.0


def test_an_unreachable_broker_answers_overloaded_quickly_never_a_hang(
    start_gateway: StartGateway
) -> None:
    from rpcfleet.broker import free_port

    port = free_port()
    gateway = start_gateway(amqp=f"amqp://guest:s3cret@127.0.0.1:{port}/", ready=False)
    with gateway.client() as http:
        wait_for(lambda: _health(http) == 200, what="the gateway to serve /healthz")
        started = time.monotonic()
        response = http.post("/v1/rpc/echo", json={})
        ready = http.get("/readyz")
    assert error_code(response) == (503, "overloaded")
    assert time.monotonic() - started < 1.0
    assert error_code(ready) == (503, "overloaded")
    # The log says which broker, its password masked, and why.
    wait_for(lambda: f"cannot reach the broker at amqp://guest:******@127.0.0.1:{port}/ ("
             in gateway.proc.output(), what="the unreachable broker in the log",
             detail=gateway.proc.output)
    assert "s3cret" not in gateway.proc.output()


def _health(http: httpx.Client) -> int:
    try:
        return http.get("/healthz").status_code
    except httpx.HTTPError:
        return 0


def test_a_call_whose_deadline_passes_while_queued_never_runs(
    amqp_url: str, gateway: Gateway, tmp_path: Path
) -> None:
    busy_marker, late_marker = tmp_path / "busy", tmp_path / "late"
    import threading

    with gateway.client() as http:
        busy = threading.Thread(target=http.post, args=("/v1/rpc/sleep",),
                                kwargs={"json": {"seconds": 2, "marker": str(busy_marker)}})
        busy.start()
        wait_for(busy_marker.exists, what="the worker to be busy")
        with httpx.Client(base_url=gateway.url, timeout=30) as other:
            late = other.post("/v1/rpc/sleep?timeout=0.5",
                              json={"seconds": 0, "marker": str(late_marker)})
        busy.join()
        assert error_code(late) == (504, "deadline_exceeded")
        # Operators see it: the pool's dead letters in /v1/pools and /metrics.
        wait_for(lambda: http.get("/v1/pools").json()[0]["dead_letters"] == 1,
                 what="the dead letter counted in /v1/pools")
        assert 'rpcfleet_dead_letters{pool="basic"} 1.0' in http.get("/metrics").text

    async def dead_letter() -> list[object]:
        async with amqp_client(amqp_url) as client:
            return list(await client.drain_queue(names.dead_queue("basic"), expect=1))

    import asyncio

    dead = asyncio.run(dead_letter())
    headers = dead[0].headers  # type: ignore[attr-defined]
    # Expired at the queue's head by the broker (x-death) or caught by the consumer's check.
    reason = headers.get(names.HEADER_DEAD_REASON) or headers["x-death"][0]["reason"]
    assert reason == "expired"
    assert not late_marker.exists()  # never ran


def test_a_blocked_broker_answers_overloaded_within_the_publish_timeout(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    # Its beats are blocked too: at 5 s a beat it stays live for the whole alarm (with 1 s
    # beats the pool would rightly read empty after 3 s, and calls get no_workers).
    start_worker(beat_interval=5)
    gateway = start_gateway(publish_timeout=1)
    wait_for_workers(gateway, 1)
    with gateway.client() as http:
        assert http.post("/v1/rpc/echo", json={"before": 1}).status_code == 200
        # A memory alarm blocks every publishing connection of the node: the gateway's publish
        # is then never confirmed.
        with blocked_broker(vhost):
            # A call whose own deadline comes before the publish timeout: its deadline passed,
            # not the broker's fault (504 with its id; it answered 503 overloaded).
            short = http.post("/v1/rpc/echo?timeout=0.3", json={"during": 2})
            started = time.monotonic()
            blocked = http.post("/v1/rpc/echo", json={"during": 1})
            took = time.monotonic() - started
        wait_for(lambda: http.post("/v1/rpc/echo", json={"after": 1}).status_code == 200,
                 timeout=30, what="calls to succeed once the broker unblocks")
    assert error_code(blocked) == (503, "overloaded")
    assert "confirm" in blocked.json()["error"]["message"]
    assert blocked.headers["retry-after"] == "1"
    assert 0.9 < took < 2.5
    assert error_code(short) == (504, "deadline_exceeded"), short.text
    assert short.json()["error"]["id"]


def test_a_sync_call_overtakes_a_backlog_of_jobs_and_a_priority_9_job_the_priority_0_ones(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    start_worker()  # one consumer, prefetch 1; its queue has the default 3 broker levels
    gateway = start_gateway()
    log = tmp_path / "order"
    with gateway.client() as http:
        occupy(http, tmp_path / "busy", seconds=1.5)
        jobs = [submit(http, "record", {"tag": tag, "log": str(log)}, priority=priority)
                .json()["id"] for tag, priority in [("low-a", 0), ("low-b", 0), ("high", 9)]]
        wait_for(lambda: vhost.queue_counts(names.pool_queue("basic"))[0] == 3,
                 what="the jobs to wait in the queue")
        sync = http.post("/v1/rpc/record", json={"tag": "sync", "log": str(log)})
        for job_id in jobs:
            until(http, job_id, "succeeded")
        workers = http.get("/v1/workers").json()
    assert sync.json()["result"] == "sync"
    assert log.read_text().split() == ["sync", "high", "low-a", "low-b"]
    assert [w["queue_max_priority"] for w in workers] == [JOB_PRIORITY_LEVELS]


def test_the_timeout_has_a_default_and_a_maximum_from_the_settings(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker()
    gateway = start_gateway(rpc_timeout_default=0.5, rpc_timeout_max=1)
    with gateway.client() as http:
        timings = []
        for query in ("", "?timeout=60", "?timeout=0.2"):
            started = time.monotonic()
            response = http.post(f"/v1/rpc/sleep{query}", json={"seconds": 2})
            timings.append(time.monotonic() - started)
            assert error_code(response) == (504, "deadline_exceeded")
    default, capped, asked = timings
    assert 0.4 < default < 1.4  # RPCFLEET_RPC_TIMEOUT_DEFAULT
    assert 0.9 < capped < 1.9  # ?timeout=60 held to RPCFLEET_RPC_TIMEOUT_MAX
    assert 0.1 < asked < 1.1

