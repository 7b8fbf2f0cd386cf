"""Operators see the fleet and tune it live: /v1/workers, prefetch commands, the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from importlib.metadata import version

import httpx
import pytest

from tests.support.fleet import StartWorker
from tests.support.gateway import StartGateway, error_code, wait_for_workers
from tests.support.jobs import until
from tests.support.processes import REPO
from tests.support.rabbit import Vhost, open_channels
from tests.support.waiting import wait_for


def _prefetches(http: httpx.Client) -> dict[str, int]:
    return {w["id"]: w["prefetch"] for w in http.get("/v1/workers").json()}


def test_workers_lists_one_entry_per_consumer_with_its_memory_cache_and_version(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    supervisor = start_worker(processes=2)
    gateway = start_gateway()
    entries = wait_for_workers(gateway, 2)
    assert [e["slot"] for e in entries] == [0, 1]
    for entry in entries:
        assert entry["id"] == f"{entry['host']}:basic:{entry['slot']}"
        assert entry["pid"] != supervisor.pid  # the supervisor is not listed
        assert entry["pss_bytes"] > 0 and entry["cache_bytes"] >= 1024 * 1024
        assert "echo" in entry["methods"] and entry["prefetch"] == 1
        assert entry["concurrency"] == 1 and entry["in_flight"] == 0
        assert entry["version"] == version("rpcfleet")  # two side by side while upgrading


def test_a_pool_prefetch_change_shows_in_the_fleet_within_2s_and_a_worker_one_alone(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    gateway = start_gateway()  # first: with 30 s beats it must hear the workers' first beat
    start_worker(processes=2, beat_interval=30)  # only the immediate beat can show it in time
    entries = wait_for_workers(gateway, 2)
    with gateway.client() as http:
        started = time.monotonic()
        assert http.put("/v1/pools/basic/prefetch", json={"prefetch": 5}).status_code == 202
        wait_for(lambda: set(_prefetches(http).values()) == {5}, timeout=2, interval=0.02,
                 what="prefetch 5 everywhere")
        took = time.monotonic() - started
        one = entries[1]["id"]
        assert http.put(f"/v1/workers/{one}/prefetch", json={"prefetch": 2}).status_code == 202
        wait_for(lambda: _prefetches(http)[one] == 2, timeout=2, interval=0.02,
                 what="prefetch 2 on one worker")
        others = {k: v for k, v in _prefetches(http).items() if k != one}
        bad = [http.put("/v1/pools/basic/prefetch", json={"prefetch": v}) for v in
               (0, 1001, "lots", None, True, "5", 2.5)]  # no lax reading of a client's bug
        ghost_pool = http.put("/v1/pools/ghost/prefetch", json={"prefetch": 2})
        ghost_worker = http.put("/v1/workers/nobody/prefetch", json={"prefetch": 2})
    assert took < 2.0
    assert set(others.values()) == {5}
    assert all((r.status_code, r.json()["error"]["code"]) == (422, "invalid_params") for r in bad)
    assert ghost_pool.status_code == 404 and ghost_worker.status_code == 404


@pytest.mark.slow  # ~20 s
def test_a_prefetch_change_behind_a_long_handler_keeps_the_worker_serving(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    """A consumer applying a new prefetch re-subscribes once what it holds has finished; meanwhile
    it still serves its pool (issue 22, #10: its beats said "not consuming" and sync calls got
    `no_workers` until a long handler ended), and the new value is visible within 2 s (SPEC),
    marked `resubscribing`, not only once the handler has ended."""
    start_worker(processes=1, prefetch=1)
    gateway = start_gateway()
    wait_for_workers(gateway, 1)
    with gateway.client() as http:
        job = http.post("/v1/jobs/sleep", json={"params": {"seconds": 6}}).json()["id"]
        until(http, job, "running")
        changed_at = time.monotonic()
        assert http.put("/v1/pools/basic/prefetch", json={"prefetch": 3}).status_code == 202
        # Three beat intervals of the change under way: every beat says it serves.
        seen = []
        visible_after = None
        window = changed_at + 3
        while time.monotonic() < window:
            entries = http.get("/v1/workers").json()
            seen += [entry["consuming"] for entry in entries]
            if visible_after is None and entries and entries[0]["prefetch"] == 3:
                visible_after = time.monotonic() - changed_at
                assert entries[0]["resubscribing"], entries  # the 6 s job still runs
            time.sleep(0.1)  # the polling pace of this observation window
        assert seen and all(seen), seen
        assert visible_after is not None and visible_after < 2.0, visible_after
        answered = http.post("/v1/rpc/echo?timeout=20", json={"after": "the change"},
                             timeout=30)
        assert answered.status_code == 200, answered.text
        assert _prefetches(http) and set(_prefetches(http).values()) == {3}


def test_a_consumer_that_leaves_is_listed_leaving_until_it_exits_and_serves_nobody_meanwhile(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    """SPEC 1.2: a consumer leaving for good beats `"leaving": true` until it exits; the pool is
    seen empty at once (SPEC 1.1: a graceful stop), so calls get `no_workers`, not a wait."""
    worker = start_worker(processes=1, prefetch=1)  # beats every second
    gateway = start_gateway()
    wait_for_workers(gateway, 1)
    with gateway.client() as http:
        job = http.post("/v1/jobs/sleep", json={"params": {"seconds": 4}}).json()["id"]
        until(http, job, "running")
        worker.signal(signal.SIGTERM)  # drains: the running job finishes first
        leaving = wait_for(lambda: [e for e in http.get("/v1/workers").json()
                                    if e.get("leaving")], timeout=5, interval=0.1,
                           what="the consumer listed as leaving")[0]
        refused = http.post("/v1/rpc/echo", json={"while": "leaving"})
        first_seen = leaving["last_seen"]
        later = wait_for(lambda: [e for e in http.get("/v1/workers").json()
                                  if e.get("leaving") and e["last_seen"] != first_seen],
                         timeout=5, interval=0.1, what="a second leaving beat")[0]
        finished = until(http, job, "succeeded", "failed", timeout=30)
        assert worker.wait(30) == 0
        wait_for(lambda: http.get("/v1/workers").json() == [], timeout=10,
                 what="the consumer gone from the view once it exited")
    assert leaving["pid"] == later["pid"] and not leaving["consuming"]
    assert error_code(refused) == (503, "no_workers")
    assert finished["status"] == "succeeded"


def test_a_replaced_process_keeps_its_slots_prefetch_and_a_silent_worker_leaves_the_view(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker(processes=1)
    gateway = start_gateway()
    before = wait_for_workers(gateway, 1)[0]
    with gateway.client() as http:
        http.put("/v1/pools/basic/prefetch", json={"prefetch": 7})
        wait_for(lambda: _prefetches(http)[before["id"]] == 7, what="prefetch 7")
        os.kill(before["pid"], signal.SIGKILL)
        after = wait_for(lambda: [w for w in http.get("/v1/workers").json()
                                  if w["pid"] != before["pid"]], timeout=20,
                         what="the replacement's beat")[0]
        assert after["id"] == before["id"] and after["prefetch"] == 7
        os.kill(after["pid"], signal.SIGSTOP)  # alive but silent: no more beats
        try:
            wait_for(lambda: http.get("/v1/workers").json() == [], timeout=10,
                     what="the silent worker to leave the view")
        finally:
            os.kill(after["pid"], signal.SIGCONT)


def test_a_pool_prefetch_set_while_one_of_its_processes_is_being_replaced_reaches_it(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    """The command comes while a slot has no process (its control queue went with it): the
    host's other consumer writes it for every slot, and the replacement starts with it (it
    started from its slot's old value, and the pool stayed split for good)."""
    start_worker(processes=2)
    gateway = start_gateway()
    entries = wait_for_workers(gateway, 2)
    victim = entries[0]
    with gateway.client() as http:
        os.kill(victim["pid"], signal.SIGKILL)  # its replacement takes a fork and a connect
        assert http.put("/v1/pools/basic/prefetch", json={"prefetch": 7}).status_code == 202
        wait_for(lambda: len(_prefetches(http)) == 2 and set(_prefetches(http).values()) == {7}
                 and all(w["pid"] != victim["pid"] for w in http.get("/v1/workers").json()),
                 timeout=30, what="both slots at 7, the replacement included")


def test_the_cli_lists_workers_and_sets_prefetch(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker(processes=1)
    gateway = start_gateway(admin_keys="boss")
    wait_for_workers(gateway, 1, headers={"Authorization": "Bearer boss"})
    cli = [sys.executable, "-m", "rpcfleet.cli"]
    env = {**os.environ, "RPCFLEET_GATEWAY_URL": gateway.url, "RPCFLEET_ADMIN_KEY": "boss"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], env=env, cwd=REPO, capture_output=True, text=True,
                              timeout=30)

    listed = run("workers")
    changed = run("prefetch", "basic", "4")
    refused = run("prefetch", "basic", "0")
    wait_for(lambda: " 4 " in run("workers").stdout, what="the new prefetch in the table")
    assert listed.returncode == 0 and ":basic:0" in listed.stdout and "prefetch" in listed.stdout
    assert changed.returncode == 0 and "prefetch 4 sent to pool basic" in changed.stdout
    assert refused.returncode == 1 and "invalid_params" in refused.stderr  # errors: stderr


def test_two_pools_announcing_one_method_are_flagged_and_only_the_first_runs_it(
    amqp_url: str, vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    """A worker of a version before method claims (SPEC 1.2) can still bind and announce a
    method another pool serves: the gateway says so on /v1/pools and in its metrics, and keeps
    routing that method to the pool that had it (no copy reaches the other's queue)."""
    import asyncio

    import aio_pika

    from protocol import WorkerEntry, names

    start_worker()
    gateway = start_gateway()
    wait_for_workers(gateway, 1)
    older = WorkerEntry(id="h:impostor:0", pool="impostor", host="h", pid=1, slot=0,
                        methods=["echo", "mine"], prefetch=1, concurrency=1, in_flight=0,
                        processed=0, failed=0, pss_bytes=None, cache_bytes=None,
                        last_seen="now", beat_interval=60)

    async def beat() -> None:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(names.pool_queue("impostor"), durable=True)
            await queue.bind(names.EXCHANGE, routing_key="echo")  # as it would, unclaimed
            events = await channel.get_exchange(names.EVENTS_EXCHANGE)
            await events.publish(aio_pika.Message(older.model_dump_json().encode()),
                                 routing_key=names.beat_key("impostor", 0))

    asyncio.run(beat())
    with gateway.client() as http:
        pools = wait_for(lambda: (found := {p["pool"]: p for p in http.get("/v1/pools").json()})
                         .get("impostor") and found, what="the older worker's pool listed")
        assert pools["basic"]["clashes"] == {"echo": ["basic", "impostor"]}
        assert pools["impostor"]["clashes"] == {"echo": ["basic", "impostor"]}  # not "mine"
        assert 'rpcfleet_method_pools{method="echo"} 2.0' in http.get("/metrics").text
        for n in range(5):
            assert http.post("/v1/rpc/echo", json={"n": n}).json()["result"] == {"n": n}
            job = http.post("/v1/jobs/echo", json={"params": {"n": n}}).json()["id"]
            assert until(http, job, "succeeded")["result"] == {"n": n}
    assert vhost.queue_counts(names.pool_queue("impostor"))[0] == 0  # no copy went there


def test_a_missing_dead_letter_queue_costs_the_gateway_no_channels(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    """Issue 22: each failed statistics poll opened a new robust channel and left the old one
    (which aio-pika reopens): +2 channels a second per gateway process until channel_max."""
    import asyncio

    import aio_pika

    from protocol import names

    start_worker()
    gateway = start_gateway()
    wait_for_workers(gateway, 1)

    async def delete_dead_letter_queue() -> None:
        connection = await aio_pika.connect(vhost.amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(names.dead_queue("basic"))

    asyncio.run(delete_dead_letter_queue())
    before = open_channels(vhost, "rpcfleet-gateway")
    # Watch over 8 polls (0.5 s apart): the count must not climb.
    counts = []
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        counts.append(open_channels(vhost, "rpcfleet-gateway"))
        time.sleep(0.5)
    assert max(counts) <= before + 1, (before, counts)
