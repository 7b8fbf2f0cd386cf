"""The gateway heals itself: its reply consumer comes back after the broker closes its channel,
and a pool that lost its last consumer is known at once (SPEC 1.1)."""

from __future__ import annotations

import signal
import time

import httpx

from protocol import names
from tests.support.fleet import StartWorker
from tests.support.gateway import Gateway, StartGateway, error_code, wait_for_workers, wait_ready
from tests.support.rabbit import Vhost, close_channels
from tests.support.waiting import wait_for


def _readyz(url: str) -> int:
    return httpx.get(f"{url}/readyz", timeout=5).status_code


def test_after_the_broker_closes_the_gateways_channel_calls_are_answered_again(
    vhost: Vhost, gateway: Gateway
) -> None:
    wait_for_workers(gateway, 1)
    with gateway.client() as http:
        assert http.post("/v1/rpc/echo", json={"n": 1}).status_code == 200
        assert close_channels(vhost, "rpcfleet-gateway") >= 1  # 406, the connection stays
        wait_for(lambda: "reply consumer restored" in gateway.proc.output(), timeout=10,
                 what="the gateway to consume its replies again")
        wait_ready(gateway, timeout=5)
        answers = [http.post("/v1/rpc/echo", json={"n": n}) for n in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert [a.json()["result"] for a in answers] == [{"n": n} for n in range(5)]
    assert gateway.proc.output().count("reply consumer restored") == 1


def test_a_pool_whose_only_worker_stopped_answers_no_workers_at_once(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    worker = start_worker(beat_interval=5)  # beats alone would take 15 s to notice
    gateway = start_gateway()
    wait_for_workers(gateway, 1)
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    with gateway.client() as http:
        started = time.monotonic()
        response = http.post("/v1/rpc/echo?timeout=20", json={})
        took = time.monotonic() - started
        assert error_code(response) == (503, "no_workers")
        assert "retry-after" in response.headers
    assert took < 2.0  # never the 20 s deadline


def test_a_pool_whose_worker_was_killed_answers_no_workers_within_about_a_second(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    worker = start_worker(beat_interval=5)
    gateway = start_gateway()
    wait_for_workers(gateway, 1)
    import os

    os.killpg(worker.pid, signal.SIGKILL)  # supervisor and consumer: no goodbye
    killed = time.monotonic()
    with gateway.client() as http:
        def refused() -> bool:
            return error_code(http.post("/v1/rpc/echo?timeout=1", json={})) == (503, "no_workers")

        wait_for(refused, timeout=5, interval=0.1, what="no_workers")
    assert time.monotonic() - killed < 4.0


def test_a_gateway_started_after_a_pools_workers_died_answers_no_workers_at_once(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    """The pool's queue outlives its workers and still takes the method's calls; a gateway
    started since never heard of the method, so its calls sat until their deadline (504) where
    the SPEC says no_workers at once. Once it has listened for three beats of the fleet's
    interval, a method no beat announced has no live worker."""
    worker = start_worker(beat_interval=1)
    wait_for_workers(start_gateway(), 1)
    import os

    os.killpg(worker.pid, signal.SIGKILL)
    gateway = start_gateway(beat_interval=1)
    with gateway.client() as http:
        wait_for(lambda: error_code(http.post("/v1/rpc/echo?timeout=1", json={})) == (
            503, "no_workers"), timeout=15, interval=0.2, what="no_workers once warm")
        started = time.monotonic()
        answer = http.post("/v1/rpc/echo?timeout=10", json={})
        took = time.monotonic() - started
        typo = http.post("/v1/rpc/no_such_method", json={})
    assert error_code(answer) == (503, "no_workers") and answer.json()["error"]["id"]
    assert took < 2.0, took
    assert error_code(typo) == (404, "unknown_method")  # no queue takes it: still a 404


def test_a_gateway_whose_job_reply_queues_cannot_be_declared_is_not_ready(
    vhost: Vhost, start_gateway: StartGateway
) -> None:
    """Readiness is the broker and both reply consumers: here the shared replies queue exists
    as a classic queue and this gateway is set for quorum ones (406 on its declaration), so
    every job would wait its publish timeout and get 503; a balancer must not send it any."""
    vhost.management("PUT", f"/api/queues/{vhost.name}/{names.REPLIES_QUEUE}",
                     {"durable": True, "arguments": {}})
    gateway = start_gateway(queue_type="quorum", ready=False)
    wait_for(lambda: "could not set up OutcomeRecorder._consume" in gateway.proc.output(),
             timeout=30, what="the refusal to be logged")
    assert "PRECONDITION_FAILED" in gateway.proc.output()
    answer = httpx.get(f"{gateway.url}/readyz", timeout=5)
    assert answer.status_code == 503, answer.text
    assert "no job reply consumer" in answer.json()["error"]["message"]
    # Mended (the old queue deleted): the part's set-up, tried again, brings it back with no
    # restart, as a node lost during the set-up would.
    vhost.management("DELETE", f"/api/queues/{vhost.name}/{names.REPLIES_QUEUE}")
    wait_for(lambda: httpx.get(f"{gateway.url}/readyz", timeout=5).status_code == 200,
             timeout=20, what="the gateway to be ready once the queue is mended",
             detail=lambda: httpx.get(f"{gateway.url}/readyz", timeout=5).text)
    assert "set up OutcomeRecorder._consume once connected (attempt" in gateway.proc.output()
