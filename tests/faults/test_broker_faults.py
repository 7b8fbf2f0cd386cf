"""The broker dropping connections, stopping, crashing, raising alarms or refusing publishes:
fast definite refusals while it cannot take work, and every job it confirmed runs. Slow:
`./run test -m slow`, run by CI as its own step."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from rpcfleet.broker import LocalBroker, free_port
from tests.faults.stage import (
    LOAD_S,
    every,
    fleet,
    in_background,
    time_to_answer,
)
from tests.support.faults import Ledger, account, load, publish
from tests.support.fleet import StartWorker, worker_factory
from tests.support.gateway import StartGateway, gateway_factory, wait_for_workers
from tests.support.proxy import Proxy, proxied
from tests.support.rabbit import Vhost, crash
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

ALARM_S = 5  # longer than the publish timeout (2 s): what is asked early is refused


def test_the_broker_closing_every_connection_every_three_seconds_loses_nothing(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    url = fleet(start_worker, start_gateway, tmp_path / "ledger")
    ledger = Ledger(tmp_path / "ledger")
    closes: list[float] = []

    def close_all() -> None:
        closes.append(time.monotonic())
        vhost.broker.ctl("close_all_connections", "-p", vhost.name, "fault suite")

    faults = every(3.0, time.monotonic() + LOAD_S, close_all)
    load(ledger, url, LOAD_S)
    faults.join()
    with httpx.Client(base_url=url, timeout=15) as http:
        report = account(ledger, http)
        recovered_in = time_to_answer(http)  # topology and consumers restored
        ready = http.get("/readyz").status_code
    publish(f"close_all_connections every 3 s (x{len(closes)})", report,
            f"calls answered {recovered_in:.1f} s after the drain")
    assert closes
    assert report.holds(), report
    assert ready == 200


def test_a_full_queue_refuses_while_workers_are_paused_and_drops_nothing_it_accepted(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    worker = start_worker("tests.pools.ledger:pool", pool="ledger", processes=1, prefetch=1,
                          test_ledger=tmp_path / "ledger", heartbeat=30)
    gateway = start_gateway(publish_timeout=2)
    wait_for_workers(gateway, 1)
    ledger = Ledger(tmp_path / "ledger")
    vhost.management("PUT", f"/api/policies/{vhost.name}/cap", {
        "pattern": r"^rpcfleet\.pool\.", "apply-to": "queues",
        "definition": {"max-length": 20, "overflow": "reject-publish"}})
    os.killpg(worker.pid, signal.SIGSTOP)  # the supervisor and its consumer: nothing is taken
    try:
        with httpx.Client(base_url=gateway.url, timeout=15) as http:
            for _ in range(50):
                ledger.submit(http, ms=1)
    finally:
        os.killpg(worker.pid, signal.SIGCONT)
    with httpx.Client(base_url=gateway.url, timeout=15) as http:
        report = account(ledger, http)
    publish("reject-publish at 20, workers paused, 50 submitted", report)
    # The consumer holds one (prefetch 1) besides the 20 the queue takes.
    assert 20 <= report.accepted <= 21 and report.definite_failures == 50 - report.accepted
    refusals = [a for a in ledger.attempts if a.outcome == "fail"]
    assert all(a.status == 503 for a in refusals)  # overloaded, without an id: not enqueued
    assert report.holds() and report.failed_jobs == 0, report


def test_broker_stop_app_start_app_fails_fast_while_down_and_completes_every_accepted_job(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    url = fleet(start_worker, start_gateway, tmp_path / "ledger")
    ledger = Ledger(tmp_path / "ledger")
    node = vhost.broker
    outage: list[float] = []

    def outage_in_the_middle() -> None:
        time.sleep(3)  # the outage's moment within the load, not a wait for a condition
        node.stop_app()
        outage.append(time.monotonic())
        time.sleep(3)  # how long the broker stays down
        node.start_app()
        outage.append(time.monotonic())

    fault = threading.Thread(target=outage_in_the_middle)
    fault.start()
    try:
        load(ledger, url, LOAD_S)
    finally:
        fault.join()
    with httpx.Client(base_url=url, timeout=15) as http:
        report = account(ledger, http, drain_seconds=120)
        recovered_in = time_to_answer(http)
    publish("broker stop_app 3 s / start_app", report,
            f"calls answered {recovered_in:.1f} s after the drain")
    during = [a for a in ledger.attempts if outage[0] + 1 < a.at < outage[1]]
    assert during and all(a.seconds < 3.5 for a in during)  # failed fast, never hung
    assert report.holds(), report


def test_memory_and_disk_alarms_answer_503_within_the_publish_timeout_never_a_false_success(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    url = fleet(start_worker, start_gateway, tmp_path / "ledger")
    ledger = Ledger(tmp_path / "ledger")
    node = vhost.broker
    windows: list[tuple[str, float, float]] = []
    alarms = {
        "memory": (("set_vm_memory_high_watermark", "0"),
                   ("set_vm_memory_high_watermark", "0.4")),
        "disk": (("set_disk_free_limit", str(10**15)), ("set_disk_free_limit", "50MB")),
    }

    def alarm_in_the_middle() -> None:
        for kind, (raise_it, clear_it) in alarms.items():
            time.sleep(2)  # the alarm's moment within the load, not a wait for a condition
            node.ctl(*raise_it)
            wait_for(lambda kind=kind: kind in node.ctl("eval", "rabbit_alarm:get_alarms()."),
                     what=f"the {kind} alarm")
            began = time.monotonic()
            time.sleep(ALARM_S)  # how long the alarm lasts
            clearing = time.monotonic()
            node.ctl(*clear_it)
            wait_for(lambda kind=kind: kind not in node.ctl("eval",
                                                            "rabbit_alarm:get_alarms()."),
                     what=f"the {kind} alarm to clear")
            windows.append((kind, began, clearing))

    fault = in_background(alarm_in_the_middle)
    try:
        load(ledger, url, 2 * (ALARM_S + 6) + 2)  # both alarms fall within the load
    finally:
        fault.join()
    with httpx.Client(base_url=url, timeout=15) as http:
        report = account(ledger, http, drain_seconds=120)
        recovered_in = time_to_answer(http)
    refusals = []
    for kind, began, clearing in windows:
        # Asked while the alarm held (and at least the publish timeout before it cleared):
        # answered within the publish timeout (2 s) + 1 s, never hanging.
        asked = [a for a in ledger.attempts if began <= a.at - a.seconds <= clearing - 2.5]
        refused = [a for a in asked if a.status == 503]
        refusals += refused
        slowest = max((a.seconds for a in asked), default=0)
        print(f"{kind} alarm: {len(asked)} asked, {len(refused)} refused (503), slowest "
              f"{slowest:.1f} s")
        assert asked and slowest < 3.0, kind
    publish(f"memory and disk alarms, {ALARM_S} s each", report,
            f"{len(refusals)} refused (503) while blocked; calls answered {recovered_in:.1f} s "
            "after the drain")
    assert refusals, "no publish was refused while the broker blocked publishers"
    assert report.holds(), report


def test_a_broker_killed_holding_1000_confirmed_jobs_runs_all_of_them_after_its_restart(
    tmp_path: Path
) -> None:
    """Every 202 is a publish the broker confirmed to disk: a crash of the node (SIGKILL, no
    clean shutdown) while it holds 1,000 of them loses none."""
    node = LocalBroker(directory=tmp_path / "rabbit", port=free_port(), name="crash")
    node.start()
    workers, gateways = worker_factory(node.amqp_url, tmp_path), gateway_factory(
        node.amqp_url, tmp_path)
    try:
        # Beats every 5 s: the paused worker still counts as live while the jobs are submitted.
        worker = next(workers)("tests.pools.ledger:pool", pool="ledger", processes=1,
                               test_ledger=tmp_path / "ledger", beat_interval=5, heartbeat=60)
        gateway = next(gateways)(publish_timeout=5)
        wait_for_workers(gateway, 1)
        ledger = Ledger(tmp_path / "ledger")
        os.killpg(worker.pid, signal.SIGSTOP)  # nothing is taken: the broker holds them all
        try:
            def submit_share() -> None:
                with httpx.Client(base_url=gateway.url, timeout=15) as http:
                    for _ in range(125):
                        ledger.submit(http, ms=1)

            for thread in [in_background(submit_share) for _ in range(8)]:
                thread.join()
            accepted = sum(1 for a in ledger.attempts if a.outcome == "ok")
            assert accepted == 1000, f"only {accepted} of 1000 accepted before the crash"
            crash(node)
            started = time.monotonic()
            node.start()
        finally:
            os.killpg(worker.pid, signal.SIGCONT)
        with httpx.Client(base_url=gateway.url, timeout=15) as http:
            report = account(ledger, http, drain_seconds=180)
        publish("broker SIGKILL holding 1,000 confirmed jobs", report,
                f"all ended {time.monotonic() - started:.1f} s after the restart began")
        assert report.accepted == 1000
        assert report.holds() and report.failed_jobs == 0, report
    finally:
        for factory in (gateways, workers):
            next(factory, None)
        node.stop()


def test_network_faults_between_each_component_and_the_broker_lose_nothing(
    vhost: Vhost, start_gateway: StartGateway, tmp_path: Path
) -> None:
    """The worker and the gateway reach the broker each through its own TCP proxy: 200 ms of
    latency, a stall of the gateway's link (shorter than its heartbeat: publishes wait, then
    time out), a stall of the worker's link past its 2 s heartbeat (the broker drops it and
    redelivers; it reconnects when the link comes back), then both links cut mid-frame."""
    with proxied(vhost.broker.port) as to_worker, proxied(vhost.broker.port) as to_gateway:
        def through(proxy: Proxy) -> str:
            return f"amqp://guest:guest@127.0.0.1:{proxy.port}/{vhost.name}"

        workers = worker_factory(through(to_worker), tmp_path)
        try:
            next(workers)("tests.pools.ledger:pool", pool="ledger", processes=2, prefetch=2,
                          test_ledger=tmp_path / "ledger", heartbeat=2)
            gateway = start_gateway(amqp=through(to_gateway), rpc_timeout_default=10,
                                    publish_timeout=2)
            wait_for_workers(gateway, 2)
            ledger = Ledger(tmp_path / "ledger")
            log: list[tuple[str, float]] = []

            def faults() -> None:
                def mark(what: str) -> None:
                    log.append((what, time.monotonic()))

                time.sleep(2)  # the moments of the faults within the load, not waits
                to_worker.set_latency(0.2)
                mark("worker link +200 ms")
                time.sleep(3)
                to_worker.set_latency(0)
                to_gateway.stall()
                mark("gateway link stalled")
                time.sleep(3)
                to_gateway.resume()
                to_worker.stall()
                mark("worker link stalled")
                time.sleep(6)
                to_worker.resume()
                mark("worker link back")
                time.sleep(3)
                to_worker.cut()
                to_gateway.cut()
                mark("both links cut mid-frame")

            fault = in_background(faults)
            try:
                load(ledger, gateway.url, 20)
            finally:
                fault.join()
            with httpx.Client(base_url=gateway.url, timeout=15) as http:
                time_to_answer(http)
                recovered_in = time.monotonic() - log[-1][1]
                report = account(ledger, http, drain_seconds=120)
                wait_for_workers(gateway, 2, timeout=30)
        finally:
            next(workers, None)
    publish("network faults (latency, stalls, cuts mid-frame) on each component's link",
            report, f"worker connected {to_worker.connections}x, gateway "
            f"{to_gateway.connections}x; {to_worker.cuts + to_gateway.cuts} connections cut; "
            f"calls answered {recovered_in:.1f} s after the cut")
    assert to_worker.cuts >= 1 and to_gateway.cuts >= 1  # each link was cut mid-frame
    assert to_worker.connections > 2  # the worker's consumers came back: after stall and cut
    assert report.holds(), report

