"""Cancelling jobs: queued ones never run, running ones stop without a cache reload."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fleet import StartWorker
from tests.support.gateway import Gateway, StartGateway, wait_for_workers
from tests.support.jobs import fetch_job, occupy, submit, until
from tests.support.waiting import wait_for


def test_a_cancelled_queued_job_never_runs(
    gateway: Gateway, tmp_path: Path
) -> None:
    busy, queued = tmp_path / "busy", tmp_path / "queued"
    with gateway.client() as http:
        blocker = occupy(http, busy)
        victim = submit(http, "sleep", {"seconds": 0, "marker": str(queued)}).json()["id"]
        cancel = http.delete(f"/v1/jobs/{victim}")
        after = submit(http, "echo", {"after": True}).json()["id"]
        until(http, blocker, "succeeded")
        until(http, after, "succeeded")  # FIFO: the cancelled one was taken before this
        again = http.delete(f"/v1/jobs/{victim}")
    assert cancel.status_code == 202 and cancel.json()["status"] == "cancelled"
    assert not queued.exists()
    assert (again.status_code, again.json()["error"]["code"]) == (409, "conflict")


def test_a_running_job_is_cancelled_within_seconds_without_reloading_the_cache(
    gateway: Gateway, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    with gateway.client() as http:
        before = http.post("/v1/rpc/whoami", json={}).json()["result"]
        job_id = submit(http, "sleep", {"seconds": 60, "marker": str(marker)}).json()["id"]
        wait_for(lambda: fetch_job(http, job_id)["status"] == "running", what="the job to run")
        assert http.delete(f"/v1/jobs/{job_id}").status_code == 202
        job = until(http, job_id, "cancelled", timeout=10)
        after = wait_for(lambda: _whoami(http), timeout=20, what="the replacement consumer")
    assert job["error"]["code"] == "cancelled"
    assert after["pid"] != before["pid"]  # the consumer exited and was replaced
    assert (after["loaded_by"], after["loaded_at"]) == (before["loaded_by"], before["loaded_at"])


def _whoami(http: httpx.Client) -> dict[str, Any] | None:
    response = http.post("/v1/rpc/whoami?timeout=2", json={})
    return response.json()["result"] if response.status_code == 200 else None


def test_a_new_consumer_learns_of_cancels_sent_before_it_started(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = start_gateway()
    marker = tmp_path / "ran"
    first = start_worker()  # declares the queue, then goes away
    wait_for_workers(gateway, 1)
    first.stop()
    with gateway.client() as http:
        job_id = submit(http, "sleep", {"seconds": 0, "marker": str(marker)}).json()["id"]
        assert http.delete(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
        start_worker()
        check = submit(http, "echo", {}).json()["id"]
        until(http, check, "succeeded")
    assert not marker.exists()
    assert os.environ.get("RPCFLEET_AMQP_URL") is None  # settings came from the fixtures only


@pytest.mark.slow  # ~20-70 s: the fast step's budget (CI runs it in the slow step)
def test_a_cancel_while_the_broker_is_down_is_stored_and_reaches_the_pool_when_it_is_back(
    tmp_path: Path
) -> None:
    from rpcfleet.broker import LocalBroker, free_port
    from tests.support.fleet import worker_factory
    from tests.support.gateway import gateway_factory, wait_ready

    node = LocalBroker(directory=tmp_path / "rabbit", port=free_port(), name="cancel-down")
    node.start()
    gateways = gateway_factory(node.amqp_url, tmp_path)
    workers = worker_factory(node.amqp_url, tmp_path)
    try:
        worker = next(workers)(beat_interval=1)
        gateway = next(gateways)()
        busy, queued = tmp_path / "busy", tmp_path / "queued"
        with gateway.client() as http:
            blocker = occupy(http, busy, seconds=3)
            victim = submit(http, "sleep", {"seconds": 0, "marker": str(queued)}).json()["id"]
            node.stop_app()
            wait_ready(gateway, status=503)
            cancel = http.delete(f"/v1/jobs/{victim}")
            assert cancel.status_code == 202, cancel.text  # stored, not a plain-text 500
            assert cancel.json()["status"] == "cancelled"
            node.start_app()
            wait_ready(gateway, timeout=60)
            # Replayed when the broker is back: the consumer receives it.
            wait_for(lambda: f"cancel of {victim} received" in worker.output(), timeout=60,
                     what="the cancel to reach the pool")
            until(http, blocker, "succeeded", timeout=60)
            after = submit(http, "echo", {"after": True}).json()["id"]
            until(http, after, "succeeded", timeout=30)
            # Both private queues came back too: the worker's control queue takes a prefetch
            # change, and the gateway's fleet-events queue hears the beat that reports it.
            assert http.put("/v1/pools/basic/prefetch", json={"prefetch": 3}).status_code == 202
            wait_for(lambda: [w["prefetch"] for w in http.get("/v1/workers").json()] == [3],
                     timeout=10, what="the new prefetch in the fleet view")
            # The record stays true even if, while the broker was stopping, a consumer that
            # slipped back in took the victim before the cancel could reach it.
            assert fetch_job(http, victim)["status"] == "cancelled"
    finally:
        for factory in (gateways, workers):
            next(factory, None)
        node.stop()
