"""Faults on purpose, with Jepsen-style accounting (tests/support/faults.py): a real broker,
gateway and worker processes under load while consumers are killed, poison arrives, or the broker
drops every connection. Each scenario passes with nothing lost, no effect duplicated and no
answer wrong. Slow (tens of seconds each): `./run test -m slow`, run by CI as its own step."""

from __future__ import annotations

import asyncio
import os
import pickle
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import aio_pika
import httpx
import pytest

from protocol import names
from rpcfleet.broker import LocalBroker, free_port
from tests.support.faults import Ledger, account, load, publish
from tests.support.fleet import StartWorker, worker_factory
from tests.support.gateway import StartGateway, gateway_factory, wait_for_workers
from tests.support.processes import consumer_count
from tests.support.rabbit import Vhost, crash, short_consumer_timeout
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

LOAD_S = 12.0


HEARTBEAT_S = 5
ALARM_S = 5  # longer than the publish timeout (2 s): what is asked early is refused


def _fleet(start_worker: StartWorker, start_gateway: StartGateway, ledger: Path,
           processes: int = 2, prefetch: int = 2) -> str:
    start_worker("tests.pools.ledger:pool", pool="ledger", processes=processes,
                 prefetch=prefetch, test_ledger=ledger, heartbeat=HEARTBEAT_S)
    gateway = start_gateway(rpc_timeout_default=10, publish_timeout=2)
    wait_for_workers(gateway, processes)
    return gateway.url


def _in_background(work: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=work)
    thread.start()
    return thread


def _every(seconds: float, until: float, fault: object) -> threading.Thread:
    def run() -> None:
        while time.monotonic() + seconds < until:
            time.sleep(seconds)  # the fault's rhythm, not a wait for a condition
            fault()  # type: ignore[operator]

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _time_to_answer(http: httpx.Client, deadline: float = 30) -> float:
    """Seconds until a sync call is answered again (fails past `deadline`)."""
    started = time.monotonic()
    wait_for(lambda: http.post("/v1/rpc/effect?timeout=2", json={"value": "after", "ms": 1})
             .status_code == 200, timeout=deadline, interval=0.2,
             what="sync calls to be answered again")
    return time.monotonic() - started


def _consumer_pids(url: str) -> list[int]:
    return [int(entry["pid"]) for entry in httpx.get(f"{url}/v1/workers", timeout=5).json()]


def test_sigkill_of_a_random_consumer_every_two_seconds_loses_nothing(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    url = _fleet(start_worker, start_gateway, tmp_path / "ledger")
    ledger = Ledger(tmp_path / "ledger")
    killed: list[int] = []

    def kill() -> None:
        pids = _consumer_pids(url)
        if pids:
            victim = random.choice(pids)
            killed.append(victim)
            os.kill(victim, signal.SIGKILL)

    faults = _every(2.0, time.monotonic() + LOAD_S, kill)
    load(ledger, url, LOAD_S)
    faults.join()
    with httpx.Client(base_url=url, timeout=15) as http:
        report = account(ledger, http)
    publish(f"SIGKILL a consumer every 2 s (x{len(killed)})", report)
    assert killed and report.accepted > 20
    assert report.lost == [] and report.duplicated == [] and report.wrong_answers == 0, report


def test_poison_mixed_into_traffic_ends_failed_and_takes_nothing_else_with_it(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    url = _fleet(start_worker, start_gateway, tmp_path / "ledger")
    ledger = Ledger(tmp_path / "ledger")
    with httpx.Client(base_url=url, timeout=15) as http:
        poisons = [http.post("/v1/jobs/poison", json={"params": {}}).json()["id"]
                   for _ in range(3)]
        load(ledger, url, LOAD_S)
        report = account(ledger, http)
        ends = [http.get(f"/v1/jobs/{job_id}").json() for job_id in poisons]
    publish("poison x3 in traffic", report)
    assert [(job["status"], job["error"]["code"]) for job in ends] == \
        [("failed", "max_attempts")] * 3
    assert report.lost == [] and report.duplicated == [] and report.wrong_answers == 0, report
    assert report.failed_jobs == 0  # the poison failed alone


def test_the_broker_closing_every_connection_every_three_seconds_loses_nothing(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    url = _fleet(start_worker, start_gateway, tmp_path / "ledger")
    ledger = Ledger(tmp_path / "ledger")
    closes: list[float] = []

    def close_all() -> None:
        closes.append(time.monotonic())
        vhost.broker.ctl("close_all_connections", "-p", vhost.name, "fault suite")

    faults = _every(3.0, time.monotonic() + LOAD_S, close_all)
    load(ledger, url, LOAD_S)
    faults.join()
    with httpx.Client(base_url=url, timeout=15) as http:
        report = account(ledger, http)
        recovered_in = _time_to_answer(http)  # topology and consumers restored
        ready = http.get("/readyz").status_code
    publish(f"close_all_connections every 3 s (x{len(closes)})", report,
            f"calls answered {recovered_in:.1f} s after the drain")
    assert closes
    assert report.lost == [] and report.duplicated == [] and report.wrong_answers == 0, report
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
    assert report.lost == [] and report.duplicated == [] and report.failed_jobs == 0, report


def test_broker_stop_app_start_app_fails_fast_while_down_and_completes_every_accepted_job(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    url = _fleet(start_worker, start_gateway, tmp_path / "ledger")
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
        recovered_in = _time_to_answer(http)
    publish("broker stop_app 3 s / start_app", report,
            f"calls answered {recovered_in:.1f} s after the drain")
    during = [a for a in ledger.attempts if outage[0] + 1 < a.at < outage[1]]
    assert during and all(a.seconds < 3.5 for a in during)  # failed fast, never hung
    assert report.lost == [] and report.duplicated == [] and report.wrong_answers == 0, report


def test_a_killed_gateway_leaves_the_workers_unharmed_and_its_jobs_end_after_its_restart(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    start_worker("tests.pools.ledger:pool", pool="ledger", processes=2, prefetch=2,
                 test_ledger=tmp_path / "ledger")
    state = tmp_path / "state"
    first = start_gateway(state_dir=state)
    wait_for_workers(first, 2)
    ledger = Ledger(tmp_path / "ledger")
    with httpx.Client(base_url=first.url, timeout=15) as http:
        for _ in range(30):
            ledger.submit(http, ms=200)
    pending = threading.Thread(target=load, args=(ledger, first.url, 2.0))
    pending.start()
    time.sleep(1)  # calls are in flight now: the moment of the crash, not a condition
    os.killpg(first.proc.pid, signal.SIGKILL)
    pending.join()
    second = start_gateway(state_dir=state)
    with httpx.Client(base_url=second.url, timeout=15) as http:
        report = account(ledger, http, drain_seconds=60)
        _time_to_answer(http)  # the workers were not harmed
    publish("gateway SIGKILL with calls and jobs in flight", report)
    assert report.lost == [] and report.duplicated == [] and report.wrong_answers == 0, report


def test_a_consumer_stopped_past_its_heartbeat_timeout_is_replaced_and_its_late_work_dropped(
    amqp_url: str, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    """SIGSTOP one consumer until the broker has closed its connection (missed heartbeats) and
    redelivered what it held; after SIGCONT its late ack and replies must change nothing."""
    url = _fleet(start_worker, start_gateway, tmp_path / "ledger")
    ledger = Ledger(tmp_path / "ledger")
    queue = names.pool_queue("ledger")
    stopped: list[float] = []

    def stop_one() -> None:
        time.sleep(2)  # the fault's moment within the load, not a wait for a condition
        victim = random.choice(_consumer_pids(url))
        os.kill(victim, signal.SIGSTOP)
        started = time.monotonic()
        try:
            wait_for(lambda: consumer_count(amqp_url, queue) == 1, timeout=4 * HEARTBEAT_S,
                     interval=0.5, what="the broker to drop the stopped consumer")
            stopped.append(time.monotonic() - started)
        finally:
            os.kill(victim, signal.SIGCONT)

    fault = _in_background(stop_one)
    try:
        load(ledger, url, 3 * HEARTBEAT_S)
    finally:
        fault.join()
    with httpx.Client(base_url=url, timeout=15) as http:
        report = account(ledger, http)
        wait_for(lambda: len(_consumer_pids(url)) == 2 and consumer_count(amqp_url, queue) == 2,
                 timeout=30, what="the stopped consumer to serve again")
    publish("SIGSTOP a consumer past its heartbeat", report,
            f"dropped by the broker after {stopped[0]:.1f} s")
    assert stopped, "the broker never dropped the stopped consumer"
    assert report.lost == [] and report.duplicated == [] and report.wrong_answers == 0, report


def test_cpu_bound_handlers_for_three_heartbeats_keep_their_connection_and_run_once(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    """Handlers run off the event loop: pure-Python work three heartbeat intervals long must
    not cost the consumer its connection, nor its job a redelivery."""
    url = _fleet(start_worker, start_gateway, tmp_path / "ledger", processes=2, prefetch=1)
    ledger = Ledger(tmp_path / "ledger")
    burn_ms = 3 * HEARTBEAT_S * 1000
    with httpx.Client(base_url=url, timeout=15) as http:
        burners = [http.post("/v1/jobs/effect", json={"params": {
            "value": f"burn{n}", "ms": burn_ms, "cpu": True}}).json()["id"] for n in range(2)]
        pids_before = sorted(_consumer_pids(url))
        wait_for(lambda: all(http.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
                             for job_id in burners),
                 timeout=burn_ms / 1000 * 3, interval=0.5, what="the CPU-bound jobs to end")
        jobs = [http.get(f"/v1/jobs/{job_id}").json() for job_id in burners]
        report = account(ledger, http)
        pids_after = sorted(_consumer_pids(url))
    runs = ledger.runs()
    publish(f"CPU-bound handlers {burn_ms / 1000:.0f} s (heartbeat {HEARTBEAT_S} s)", report)
    assert [runs[job_id] for job_id in burners] == [1, 1]  # no redelivery, no second run
    assert [job["attempts"] for job in jobs] == [1, 1]
    assert pids_after == pids_before  # nobody replaced
    logs = "".join(path.read_text() for path in tmp_path.glob("worker*.log"))
    assert "Unexpected connection close" not in logs and "missed heartbeats" not in logs


def test_memory_and_disk_alarms_answer_503_within_the_publish_timeout_never_a_false_success(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    url = _fleet(start_worker, start_gateway, tmp_path / "ledger")
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

    fault = _in_background(alarm_in_the_middle)
    try:
        load(ledger, url, 2 * (ALARM_S + 6) + 2)  # both alarms fall within the load
    finally:
        fault.join()
    with httpx.Client(base_url=url, timeout=15) as http:
        report = account(ledger, http, drain_seconds=120)
        recovered_in = _time_to_answer(http)
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
    assert report.lost == [] and report.duplicated == [] and report.wrong_answers == 0, report


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

            for thread in [_in_background(submit_share) for _ in range(8)]:
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
        assert report.lost == [] and report.duplicated == [] and report.failed_jobs == 0, report
    finally:
        for factory in (gateways, workers):
            next(factory, None)
        node.stop()


def test_handlers_longer_than_the_consumer_timeout_lose_nothing_and_the_fleet_keeps_serving(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    """The node closes a consumer's channel when a delivery stays unacked past its
    consumer_timeout (2 s here): long jobs among the load run past it, again and again."""
    with short_consumer_timeout(vhost, 2000):  # channels read it when they open: first
        url = _fleet(start_worker, start_gateway, tmp_path / "ledger")
        ledger = Ledger(tmp_path / "ledger")
        with httpx.Client(base_url=url, timeout=15) as http:
            for _ in range(4):
                ledger.submit(http, ms=3000)  # each outlives the consumer_timeout
            load(ledger, url, LOAD_S)
            report = account(ledger, http, drain_seconds=120)
            recovered_in = _time_to_answer(http)
    logs = "".join(path.read_text() for path in tmp_path.glob("worker*.log"))
    closes = logs.count("subscription restored")
    publish("handlers past a 2 s consumer_timeout", report,
            f"{closes} channel closes, each restored; calls answered {recovered_in:.1f} s "
            "after the drain")
    assert closes >= 1, "the broker never closed a channel at its consumer_timeout"
    assert report.lost == [] and report.duplicated == [] and report.wrong_answers == 0, report
    assert report.failed_jobs == 0


def test_garbage_published_straight_to_a_pool_queue_is_dead_lettered_and_harms_nothing(
    amqp_url: str, vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway,
    tmp_path: Path
) -> None:
    url = _fleet(start_worker, start_gateway, tmp_path / "ledger")
    ledger = Ledger(tmp_path / "ledger")
    pids = sorted(_consumer_pids(url))
    queue = names.pool_queue("ledger")
    garbage = {
        "not JSON": dict(body=b"{not json", type="effect", correlation_id="g-json"),
        "no correlation_id": dict(body=b"{}", type="effect", correlation_id=None),
        "a pickle blob": dict(body=pickle.dumps({"value": 1}), type="effect",
                              correlation_id="g-pickle", content_type="application/x-pickle"),
        "an unknown method, no reply_to": dict(body=b"{}", type="no.such.method",
                                               correlation_id="g-method"),
        "huge headers": dict(body=b"\xff\xfe", type="effect", correlation_id="g-headers",
                             headers={f"x-junk-{n}": "j" * 1000 for n in range(100)}),
    }

    async def publish_garbage() -> None:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            for _ in range(3):
                for fields in garbage.values():
                    await channel.default_exchange.publish(
                        aio_pika.Message(**fields), routing_key=queue)  # type: ignore[arg-type]
                await asyncio.sleep(1)  # spread over the load, not a wait for a condition

    sender = _in_background(lambda: asyncio.run(publish_garbage()))
    try:
        load(ledger, url, LOAD_S)
    finally:
        sender.join()
    with httpx.Client(base_url=url, timeout=15) as http:
        report = account(ledger, http)

    async def dead_reasons() -> list[str]:
        from tests.support.amqp_client import amqp_client

        async with amqp_client(amqp_url) as client:
            letters = await client.drain_queue(names.dead_queue("ledger"), expect=15, timeout=20)
        return [str((m.headers or {}).get(names.HEADER_DEAD_REASON)) for m in letters]

    reasons = asyncio.run(dead_reasons())
    publish("garbage on a pool queue (5 kinds x 3)", report,
            f"{len(reasons)} dead-lettered ({', '.join(sorted(set(reasons)))})")
    assert reasons == ["malformed"] * 15
    assert sorted(_consumer_pids(url)) == pids  # no consumer died of it
    assert report.lost == [] and report.duplicated == [] and report.wrong_answers == 0, report
