"""A pool taken out of service on purpose (SPEC 1.2, pools that leave): its bindings go first,
then what is left in its queue is served (drain) or dead-lettered, then its queue is deleted and
its workers leave for good; nothing a caller sent is lost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from protocol import names
from tests.support.fleet import StartWorker
from tests.support.gateway import Gateway, StartGateway, error_code, wait_for_workers
from tests.support.jobs import submit, until
from tests.support.processes import REPO
from tests.support.rabbit import Vhost
from tests.support.waiting import wait_for

QUEUE = names.pool_queue("basic")


def _queue_exists(vhost: Vhost) -> bool:
    return QUEUE in vhost.list_queues()


def test_a_drained_retirement_serves_what_is_queued_then_deletes_the_queue(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    worker = start_worker(processes=2)
    gateway = start_gateway()
    wait_for_workers(gateway, 2)
    marker = tmp_path / "started"
    with gateway.client() as http:
        jobs = [submit(http, "sleep", {"seconds": 1, "marker": str(marker)}).json()["id"]
                for _ in range(5)]
        wait_for(lambda: vhost.queue_counts(QUEUE)[0] >= 1, what="jobs waiting in the queue")
        retiring = http.delete("/v1/pools/basic?drain=true")
        again = http.delete("/v1/pools/basic?drain=true")
        # The bindings went first: a new call of its methods is refused at once.
        refused = http.post("/v1/rpc/echo", json={"late": True})
        ended = [until(http, job_id, "succeeded", "failed", timeout=60) for job_id in jobs]
        assert worker.wait(60) == 0  # its supervisor left for good, not replaced
        wait_for(lambda: not _queue_exists(vhost), timeout=30, what="the queue to be deleted")
        listed = wait_for(lambda: next((p for p in http.get("/v1/pools").json()
                                        if p["pool"] == "basic" and p["retired"]), None),
                          timeout=20, what="the pool listed as retired",
                          detail=lambda: str(http.get("/v1/pools").json()))
        after = http.delete("/v1/pools/basic")
        # Retired, its workers gone: its methods are unknown, not a pool without workers.
        late_call = http.post("/v1/rpc/echo", json={"after": "retired"})
        late_job = submit(http, "echo", {"after": "retired"})
    assert retiring.status_code == 202 and retiring.json()["drain"] is True
    assert again.status_code == 409, again.text
    assert error_code(again) == (409, "conflict")
    assert error_code(refused) == (404, "unknown_method")
    assert error_code(late_call) == (404, "unknown_method"), late_call.text
    assert error_code(late_job) == (404, "unknown_method"), late_job.text
    assert [job["status"] for job in ended] == ["succeeded"] * 5  # served, each once
    assert len(marker.read_text().split()) == 5
    assert listed["retiring"]["state"] == "deleted"
    assert listed["retiring"]["dead_lettered"] == 0
    assert error_code(after) == (404, "not_found")
    assert "was retired: stopping its consumers" in worker.output()


def test_without_a_drain_what_is_left_is_dead_lettered_saying_why(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    worker = start_worker(processes=1, prefetch=3)
    gateway = start_gateway()
    wait_for_workers(gateway, 1)
    marker = tmp_path / "started"
    with gateway.client() as http:
        running = submit(http, "sleep", {"seconds": 2, "marker": str(marker)}).json()["id"]
        wait_for(marker.exists, what="the first job to start")
        left = [submit(http, "sleep", {"seconds": 0.1, "marker": str(marker)}).json()["id"]
                for _ in range(4)]  # two held by the consumer, two in the queue
        assert http.delete("/v1/pools/basic").status_code == 202
        first = until(http, running, "succeeded", "failed", timeout=30)
        rest = [until(http, job_id, "succeeded", "failed", timeout=30) for job_id in left]
        assert worker.wait(60) == 0
        wait_for(lambda: not _queue_exists(vhost), timeout=30, what="the queue to be deleted")
        dead = http.get("/v1/pools/basic/dead").json()
        # Its counts follow the queue that is gone, not the last poll before: nothing queued,
        # what was left in its dead letters (to inspect from the page), no consumers wanted.
        listed = wait_for(lambda: next((p for p in http.get("/v1/pools").json()
                                        if p["pool"] == "basic" and p["retired"]
                                        and p["dead_letters"] == 4), None),
                          timeout=10, what="the retired pool's counts",
                          detail=lambda: str(http.get("/v1/pools").json()))
        metrics = http.get("/metrics").text
    assert (listed["queue_depth"], listed["consumers"]) == (0, 0)
    assert 'rpcfleet_queue_messages{pool="basic"} 0.0' in metrics
    assert 'rpcfleet_pool_desired_consumers{pool="basic"} 0.0' in metrics
    assert first["status"] == "succeeded"  # what ran finished
    assert [job["status"] for job in rest] == ["failed"] * 4
    assert all("retired" in job["error"]["message"] for job in rest), rest
    assert sorted(letter["id"] for letter in dead) == sorted(left)  # none lost
    assert {letter["reason"] for letter in dead} == {"retired"}
    # Jobs are final in the store (failed, saying why): their dead letters stay to inspect.
    assert all("submit it again" in letter["replay_refusal"] for letter in dead), dead
    assert len(marker.read_text().split()) == 1  # none of them ran


def test_retiring_an_unknown_pool_is_not_found(gateway: Gateway) -> None:
    wait_for_workers(gateway, 1)
    with gateway.client() as http:
        assert error_code(http.delete("/v1/pools/nobody")) == (404, "not_found")


def test_the_cli_retires_a_pool_and_follows_it(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    worker = start_worker()
    gateway = start_gateway(admin_keys="boss")
    wait_for_workers(gateway, 1, headers={"Authorization": "Bearer boss"})
    env = {**os.environ, "RPCFLEET_GATEWAY_URL": gateway.url, "RPCFLEET_ADMIN_KEY": "boss"}
    done = subprocess.run([sys.executable, "-m", "rpcfleet.cli", "retire", "basic", "--drain"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pool basic retired" in done.stdout
    assert worker.wait(30) == 0
    assert not _queue_exists(vhost)
