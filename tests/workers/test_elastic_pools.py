"""Elastic pools (SPEC 1.2): `--processes MIN..MAX` follows the load on real consumer processes,
the range changes live, and a retired consumer loses nothing. The policy's units are in
tests/workers/test_scaling_policy.py."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from protocol import names
from tests.support.fleet import StartWorker
from tests.support.gateway import Gateway, StartGateway, error_code, wait_for_workers
from tests.support.jobs import submit, until
from tests.support.processes import REPO, consumer_count
from tests.support.waiting import wait_for

QUEUE = names.pool_queue("basic")
WORK_S = 0.3  # each call's work: long enough that six callers keep one consumer saturated


class Callers:
    """`count` threads making sync `record` calls (each commits its tag to `effects` once its
    work is done) until told to stop; every answer kept."""

    def __init__(self, gateway: Gateway, effects: Path, count: int) -> None:
        self.gateway = gateway
        self.effects = effects
        self.answers: list[tuple[str, int, Any]] = []
        self._stops = [threading.Event() for _ in range(count)]
        self._threads = [threading.Thread(target=self._call, args=(n,))
                         for n in range(count)]
        for thread in self._threads:
            thread.start()

    def _call(self, number: int) -> None:
        with self.gateway.client() as http:
            sent = 0
            while not self._stops[number].is_set():
                tag = f"{number}-{sent}"
                sent += 1
                answer = http.post("/v1/rpc/record", json={"tag": tag, "log": str(self.effects),
                                                            "seconds": WORK_S})
                self.answers.append((tag, answer.status_code, answer.json()))

    def keep(self, count: int) -> None:
        """Stop all but the first `count` callers."""
        for n, stop in enumerate(self._stops):
            if n >= count:
                stop.set()
        for n, thread in enumerate(self._threads):
            if n >= count:
                thread.join(timeout=30)


@pytest.mark.slow  # a long scenario: in .ci/run's slow step
def test_an_elastic_pool_grows_under_load_and_shrinks_when_idle_losing_nothing(
    amqp_url: str, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    worker = start_worker(processes="1..3", scale_idle=3)
    gateway = start_gateway()
    wait_for_workers(gateway, 1)
    effects = tmp_path / "effects"
    callers = Callers(gateway, effects, count=6)
    try:
        wait_for(lambda: consumer_count(amqp_url, QUEUE) == 3, timeout=40, interval=0.2,
                 what="the pool to grow to its maximum of 3", detail=worker.output)
        # /metrics: the host's consumers, and more needed than it may run (6 callers, 3 busy,
        # requests waiting): what a KEDA rule adds hosts on.
        wait_for(lambda: _metric(gateway, "rpcfleet_pool_consumers", pool="basic") == 3,
                 timeout=20, what="/metrics to show the host's 3 consumers")
        wait_for(lambda: (_metric(gateway, "rpcfleet_pool_desired_consumers", pool="basic")
                          or 0) >= 3, timeout=20, what="the desired consumers to reach 3")
        # One caller stays: the pool retires one consumer of 3 while calls flow (one busy on
        # average; two do), and keeps 2 (one of 1 would be 100 % busy).
        callers.keep(1)
        wait_for(lambda: consumer_count(amqp_url, QUEUE) == 2, timeout=40, interval=0.2,
                 what="one consumer retired under a light load", detail=worker.output)
    finally:
        callers.keep(0)
    wait_for(lambda: consumer_count(amqp_url, QUEUE) == 1, timeout=40, interval=0.2,
             what="the idle pool back to its minimum of 1", detail=worker.output)
    entries = wait_for(lambda: _fleet_says(gateway, {"min": 1, "max": 3, "now": 1,
                                                     "added": 2, "retired": 2}),
                       timeout=20, what="the beats to say 1..3, 1 running, 2 added, 2 retired")
    assert entries[0]["processes"]["last"]["change"] == -1
    assert _metric(gateway, "rpcfleet_pool_scaling_decisions_total", pool="basic",
                   direction="up") == 2
    assert _metric(gateway, "rpcfleet_pool_scaling_decisions_total", pool="basic",
                   direction="down") == 2

    wrong = [a for a in callers.answers if a[1] != 200 or a[2].get("result") != a[0]]
    assert not wrong, wrong[:5]
    committed = effects.read_text().split()
    assert sorted(committed) == sorted(tag for tag, _, _ in callers.answers)  # each once
    log = worker.output()
    assert log.count("adding a consumer") == 2 and "requests waiting" in log
    assert log.count("retiring the consumer") == 2 and "retired" in log
    assert entries[0]["processes"]["held_back"] is None


def test_the_range_changes_live_and_a_bad_range_is_refused(
    amqp_url: str, start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker(processes=1)
    gateway = start_gateway()
    wait_for_workers(gateway, 1)
    form = {"content-type": "application/x-www-form-urlencoded"}  # what `curl -d` sends
    with gateway.client() as http:
        raised = http.put("/v1/pools/basic/processes", content=b'{"min": 2, "max": 2}',
                          headers=form)
        assert raised.status_code == 202, raised.text
        assert raised.json()["processes"] == {"min": 2, "max": 2}
        wait_for(lambda: consumer_count(amqp_url, QUEUE) == 2, timeout=20,
                 what="raising the minimum to fork at once")
        wait_for(lambda: _fleet_says(gateway, {"min": 2, "max": 2, "now": 2}, workers=2),
                 timeout=20, what="both beats to say 2..2, 2 running")
        refused = {
            "min above max": http.put("/v1/pools/basic/processes", json={"min": 3, "max": 2}),
            "no consumer": http.put("/v1/pools/basic/processes", json={"min": 0, "max": 2}),
            "over the limit": http.put("/v1/pools/basic/processes", json={"min": 1, "max": 33}),
            "max missing": http.put("/v1/pools/basic/processes", json={"min": 1}),
            "not a number": http.put("/v1/pools/basic/processes", json={"min": True, "max": "2"}),
            "not json": http.put("/v1/pools/basic/processes", content=b"min=1&max=2",
                                 headers=form),
        }
        unknown = http.put("/v1/pools/nobody/processes", json={"min": 1, "max": 2})
        lowered = http.put("/v1/pools/basic/processes", json={"min": 1, "max": 1})
        wait_for(lambda: consumer_count(amqp_url, QUEUE) == 1, timeout=30,
                 what="lowering the maximum to retire at once")
        prefetch = http.put("/v1/pools/basic/prefetch", content=b'{"prefetch": 3}',
                            headers=form)
    for what, answer in refused.items():
        assert error_code(answer) == (422, "invalid_params"), what
    assert "min (3) is above max (2)" in refused["min above max"].json()["error"]["message"]
    assert "RPCFLEET_MAX_PROCESSES" in refused["over the limit"].json()["error"]["message"]
    assert error_code(unknown) == (404, "not_found")
    assert lowered.status_code == 202
    assert prefetch.status_code == 202, prefetch.text  # the prefetch route reads JSON too


@pytest.mark.slow  # ~30 s
def test_a_pool_shrinking_retires_an_idle_consumer_before_a_busy_one(
    amqp_url: str, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    """Three consumers, two running 6 s jobs, one done with a short one (the first taken, so,
    by the broker's round robin, most likely the lowest slot): lowered to two, the idle one
    leaves. Before, the highest slot left whatever it ran: drained within
    RPCFLEET_DRAIN_TIMEOUT (1 s here), its job ran again elsewhere."""
    start_worker(processes=3, drain_timeout=1)
    gateway = start_gateway()
    wait_for_workers(gateway, 3)
    marker = tmp_path / "started"
    with gateway.client() as http:
        short = submit(http, "sleep", {"seconds": 0.1}).json()["id"]
        jobs = [submit(http, "sleep", {"seconds": 6, "marker": str(marker)}).json()["id"]
                for _ in range(2)]
        wait_for(lambda: marker.exists() and len(marker.read_text().split()) == 2,
                 what="both jobs to run")
        until(http, short, "succeeded")
        busy = set(marker.read_text().split())
        lowered = http.put("/v1/pools/basic/processes", json={"min": 2, "max": 2})
        wait_for(lambda: consumer_count(amqp_url, QUEUE) == 2, timeout=30,
                 what="one consumer retired")
        done = [until(http, job_id, "succeeded", "failed", timeout=40) for job_id in jobs]
    assert lowered.status_code == 202
    assert [(job["status"], job["attempts"]) for job in done] == [("succeeded", 1)] * 2
    assert set(marker.read_text().split()) == busy  # neither ran again
    assert {str(job["result"]["pid"]) for job in done} == busy


def test_the_cli_sets_a_pools_processes(
    amqp_url: str, start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker(processes=1)
    gateway = start_gateway(admin_keys="boss")
    wait_for_workers(gateway, 1, headers={"Authorization": "Bearer boss"})
    env = {**os.environ, "RPCFLEET_GATEWAY_URL": gateway.url, "RPCFLEET_ADMIN_KEY": "boss"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "rpcfleet.cli", "processes", *args],
                              env=env, cwd=REPO, capture_output=True, text=True, timeout=30)

    changed = run("basic", "2..3")
    malformed = run("basic", "3..1")
    too_many = run("basic", "1..999")
    wait_for(lambda: consumer_count(amqp_url, QUEUE) == 2, timeout=20,
             what="the minimum of 2 forked")
    assert changed.returncode == 0 and "processes 2..3 sent to pool basic" in changed.stdout
    assert malformed.returncode == 2 and "MIN is above MAX" in malformed.stderr  # errors: stderr
    assert too_many.returncode == 1 and "RPCFLEET_MAX_PROCESSES" in too_many.stderr


def test_an_elastic_pool_never_forks_past_the_hosts_free_memory(
    amqp_url: str, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    # A margin no host has: every consumer it would add is held back, and it says so.
    worker = start_worker(processes="1..3", scale_memory_margin_mb=1 << 40)
    gateway = start_gateway()
    wait_for_workers(gateway, 1)
    callers = Callers(gateway, tmp_path / "effects", count=4)
    try:
        entries = wait_for(lambda: _held_back(gateway), timeout=30, interval=0.2,
                           what="the beat to say a consumer is held back",
                           detail=worker.output)
        count = consumer_count(amqp_url, QUEUE)
    finally:
        callers.keep(0)
    assert count == 1
    assert "host memory" in entries[0]["processes"]["held_back"]
    assert "not adding a consumer: host memory" in worker.output()
    assert all(status == 200 for _, status, _ in callers.answers)


def _fleet_says(gateway: Gateway, processes: dict[str, int],
                workers: int = 1) -> list[dict[str, Any]] | None:
    entries: list[dict[str, Any]] = httpx.get(f"{gateway.url}/v1/workers", timeout=5).json()
    live = [e for e in entries if not e.get("leaving")]
    ok = len(live) == workers and all(
        {k: e["processes"][k] for k in processes} == processes for e in live)
    return live if ok else None


def _metric(gateway: Gateway, name: str, **labels: str) -> float | None:
    """The value of the first series `name` of /metrics whose labels include `labels`."""
    text = httpx.get(f"{gateway.url}/metrics", timeout=5).text
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if series.split("{")[0] == name and all(f'{k}="{v}"' in series
                                                 for k, v in labels.items()):
            return float(value)
    return None


def _held_back(gateway: Gateway) -> list[dict[str, Any]] | None:
    entries: list[dict[str, Any]] = httpx.get(f"{gateway.url}/v1/workers", timeout=5).json()
    return entries if entries and entries[0]["processes"]["held_back"] else None
