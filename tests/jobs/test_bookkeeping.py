"""The job object tells the truth from the worker's reply: attempts, worker, start and finish
times, even when events were lost or outcomes were stored late (SPEC 1.1)."""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.fleet import StartWorker
from tests.support.gateway import StartGateway, wait_for_workers
from tests.support.jobs import submit, until
from tests.support.waiting import wait_for


def _ms(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000


def test_a_job_rerun_after_its_consumer_was_killed_counts_both_starts(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    start_worker(processes=1)
    gateway = start_gateway()
    wait_for_workers(gateway, 1)
    marker = tmp_path / "started"
    with gateway.client() as http:
        job_id = submit(http, "sleep", {"seconds": 1.5, "marker": str(marker)}).json()["id"]
        first_pid = int(wait_for(lambda: marker.exists() and marker.read_text().split(),
                                 what="the job to start")[0])
        os.kill(first_pid, signal.SIGKILL)
        job = until(http, job_id, "succeeded", timeout=40)
    pids = [int(p) for p in marker.read_text().split()]
    assert len(pids) == 2 and pids[0] == first_pid != pids[1]
    assert job["attempts"] == 2
    assert job["result"]["attempt"] == 2 and job["result"]["pid"] == pids[1]
    assert job["worker"].endswith(":basic:0")


def test_jobs_whose_outcomes_are_stored_late_keep_the_workers_finish_times(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    start_worker(processes=1)
    submitter = start_gateway(state_dir=tmp_path / "state")
    wait_for_workers(submitter, 1)
    with submitter.client() as http:
        ids = [submit(http, "sleep", {"seconds": 0.3}).json()["id"] for _ in range(6)]
    submitter.proc.stop()  # the outcomes wait in rpcfleet.replies meanwhile
    recorder = start_gateway(state_dir=tmp_path / "state")
    with recorder.client() as http:
        jobs = [until(http, job_id, "succeeded", timeout=30) for job_id in ids]
    finished = sorted(_ms(job["finished_at"]) for job in jobs)
    gaps = [later - earlier for earlier, later in itertools.pairwise(finished)]
    assert all(gap >= 250 for gap in gaps), gaps  # one after another, 0.3 s each
    for job in jobs:
        ran = _ms(job["finished_at"]) - _ms(job["started_at"])
        assert 250 <= ran < 2000, job
        assert job["attempts"] == 1


@pytest.mark.slow  # ~20-70 s: the fast step's budget (CI runs it in the slow step)
def test_an_outcome_the_store_cannot_take_is_parked_and_recorded_later(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    start_worker(processes=1)
    gateway = start_gateway(state_dir=tmp_path / "state")
    wait_for_workers(gateway, 1)
    with gateway.client() as http:
        job_id = submit(http, "sleep", {"seconds": 0.5}).json()["id"]
        # Another process holds the store's write lock past its busy timeout (10 s): the
        # outcome cannot be stored, so it must be parked (and come back), not stay unacked.
        lock = sqlite3.connect(tmp_path / "state" / "jobs.sqlite3", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            wait_for(lambda: "could not store the outcome" in gateway.proc.output(),
                     timeout=30, what="the store to refuse the outcome")
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        job = until(http, job_id, "succeeded", timeout=30)
    assert job["attempts"] == 1
