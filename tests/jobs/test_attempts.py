"""A job's `attempts` counts starts (SPEC: job object), whatever the deliveries were: an answer
that ran nothing here (expired, invalid params, the tombstone of a killed run, the attempt past
the maximum) adds none, and a job that started in time is re-run, not expired, when its consumer
dies after its deadline. Real worker processes, really killed."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.support.fleet import StartWorker
from tests.support.gateway import Gateway, StartGateway, wait_for_workers
from tests.support.jobs import occupy, submit, until
from tests.support.waiting import wait_for


def test_a_job_answered_without_running_counts_no_start(
    gateway: Gateway, tmp_path: Path
) -> None:
    with gateway.client() as http:
        occupy(http, tmp_path / "busy")
        late = submit(http, "sleep", {"seconds": 0}, timeout=0.3).json()["id"]
        expired = until(http, late, "expired", timeout=20)
        refused = until(http, submit(http, "greet", {"nobody": 1}).json()["id"], "failed")
    assert expired["error"]["code"] == "expired" and expired["attempts"] == 0
    assert refused["error"]["code"] == "invalid_params" and refused["attempts"] == 0


def test_a_job_whose_handler_cancelled_its_own_run_counts_its_start(gateway: Gateway) -> None:
    with gateway.client() as http:
        job = until(http, submit(http, "cancels_own_run", {}).json()["id"], "failed")
    assert job["error"]["code"] == "worker_error" and "cancelled its own run" in (
        job["error"]["message"])
    assert job["attempts"] == 1 and job["started_at"] is not None


def test_a_job_killed_in_a_gil_holding_call_counts_the_one_start_it_had(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    start_worker("tests.pools.limits:pool", pool="limits", processes=1, kill_grace=1)
    gateway = start_gateway()
    wait_for_workers(gateway, 1)
    marker = tmp_path / "started"
    with gateway.client() as http:
        job_id = submit(http, "hog", {"seconds": 20, "marker": str(marker)}).json()["id"]
        job = until(http, job_id, "failed", timeout=40)
    assert job["error"]["code"] == "time_limit"
    assert len(marker.read_text().split()) == 1  # answered on redelivery, never run again
    assert job["attempts"] == 1


def test_a_job_that_kills_its_consumer_every_time_counts_max_attempts_starts(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker(processes=1, max_attempts=3)
    gateway = start_gateway()
    wait_for_workers(gateway, 1)
    with gateway.client() as http:
        job = until(http, submit(http, "die", {}).json()["id"], "failed", timeout=60)
    assert job["error"]["code"] == "max_attempts"
    assert job["attempts"] == 3


def test_a_job_that_started_in_time_does_not_end_expired_when_its_consumer_dies_late(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    """`expired` means not started by the deadline. A job whose consumer dies mid-run after its
    timeout comes back to the queue with its request's expiration (on the wire) spent, and the
    broker drops it there: the job fails `worker_error` saying so, with the one start it had."""
    start_worker(processes=1)
    gateway = start_gateway()
    wait_for_workers(gateway, 1)
    marker = tmp_path / "started"
    with gateway.client() as http:
        submitted = time.monotonic()
        job_id = submit(http, "sleep", {"seconds": 4, "marker": str(marker)},
                        timeout=1).json()["id"]
        first_pid = int(wait_for(lambda: marker.exists() and marker.read_text().split(),
                                 what="the job to start")[0])
        until(http, job_id, "running")
        wait_for(lambda: time.monotonic() - submitted > 1.5, what="the job's deadline to pass")
        os.kill(first_pid, signal.SIGKILL)
        job = until(http, job_id, "succeeded", "expired", "failed", timeout=40)
    assert (job["status"], job["error"]["code"]) == ("failed", "worker_error"), job["error"]
    assert "consumer was lost while running it" in job["error"]["message"]
    assert job["attempts"] == 1 and len(marker.read_text().split()) == 1
