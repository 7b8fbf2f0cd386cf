"""RPCFLEET_QUEUE_TYPE=quorum: every durable queue is a quorum queue (replicated in a cluster),
and calls, jobs, expiry and redelivery behave as with classic queues (no priorities on 3.10)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from protocol import names
from protocol.queues import QUORUM_NORMAL_PRIORITY_MAX, job_message_priority
from tests.support.fleet import StartWorker
from tests.support.gateway import StartGateway
from tests.support.jobs import submit, until
from tests.support.rabbit import Vhost
from tests.support.waiting import wait_for

DURABLE_QUEUES = ("rpcfleet.pool.basic", "rpcfleet.dead.basic", "rpcfleet.dead-events",
                  "rpcfleet.replies")


def test_with_quorum_queues_calls_jobs_expiry_and_redelivery_work(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    start_worker(processes=2, queue_type="quorum")
    gateway = start_gateway(queue_type="quorum")
    types = vhost.list_queues("type")
    assert {queue: types[queue] for queue in DURABLE_QUEUES} == {
        queue: ["quorum"] for queue in DURABLE_QUEUES}

    with gateway.client() as http:
        call = http.post("/v1/rpc/echo", json={"x": 1})
        assert call.status_code == 200 and call.json()["result"] == {"x": 1}
        job_id = submit(http, "echo", {"y": 2}).json()["id"]
        assert until(http, job_id, "succeeded")["result"] == {"y": 2}

        # A consumer killed mid-job: the other consumer answers the redelivery.
        started = tmp_path / "started"
        job_id = submit(http, "sleep", {"seconds": 3, "marker": str(started)}).json()["id"]
        victim = wait_for(lambda: started.exists() and started.read_text().split(),
                          what="the job to start")[0]
        os.kill(int(victim), signal.SIGKILL)
        redone = until(http, job_id, "succeeded", timeout=40)
        assert redone["result"]["pid"] != int(victim)
        assert redone["result"]["attempt"] == 2

        # A job that outwaits its timeout while both consumers are busy is dead-lettered.
        busy, late = tmp_path / "busy", tmp_path / "late"
        for _ in range(2):
            submit(http, "sleep", {"seconds": 2, "marker": str(busy)})
        wait_for(lambda: busy.exists() and len(busy.read_text().split()) == 2,
                 what="both consumers to be busy")
        expiring = submit(http, "sleep", {"seconds": 0, "marker": str(late)}, timeout=0.3)
        job = until(http, expiring.json()["id"], "expired", timeout=20)
        assert job["error"]["code"] == "expired"
        assert not late.exists()


def test_on_quorum_queues_jobs_stay_below_the_priority_of_sync_calls() -> None:
    assert [job_message_priority(p, "quorum") for p in range(10)] == [0, 1, 2, 3, 4, 4, 4, 4, 4, 4]
    assert names.SYNC_PRIORITY > QUORUM_NORMAL_PRIORITY_MAX


def test_quorum_pool_queues_carry_a_delivery_limit_and_at_least_once_dead_lettering(
    vhost: Vhost, start_worker: StartWorker
) -> None:
    start_worker(queue_type="quorum")
    queue = vhost.management("GET", f"/api/queues/{vhost.name}/{names.pool_queue('basic')}")
    arguments = queue["arguments"]
    assert arguments["x-queue-type"] == "quorum"
    assert arguments["x-delivery-limit"] == 10
    assert arguments["x-dead-letter-strategy"] == "at-least-once"
    assert arguments["x-overflow"] == "reject-publish"  # what at-least-once needs


def test_a_pool_queue_declared_with_other_arguments_is_used_as_it_is(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    # As an earlier version declared it: quorum, without the delivery limit and strategy.
    vhost.management("PUT", f"/api/queues/{vhost.name}/{names.pool_queue('basic')}",
                     {"durable": True, "arguments": {"x-queue-type": "quorum"}})
    worker = start_worker(queue_type="quorum")
    gateway = start_gateway(queue_type="quorum")
    with gateway.client() as http:
        answer = http.post("/v1/rpc/echo", json={"still": "served"})
    assert answer.status_code == 200
    assert "exists with other arguments" in worker.output()


def test_several_nodes_make_quorum_the_default_queue_type() -> None:
    from gateway.settings import GatewaySettings
    from workers.settings import WorkerSettings

    cluster = "amqp://a:5672/,amqp://b:5672/"
    assert WorkerSettings(amqp_url=cluster).queues == "quorum"
    assert GatewaySettings(amqp_url=cluster).queues == "quorum"
    assert WorkerSettings(amqp_url="amqp://a:5672/").queues == "classic"
    assert WorkerSettings(amqp_url=cluster, queue_type="classic").queues == "classic"


def test_on_rabbitmq_3_quorum_queues_a_sync_call_waits_behind_queued_jobs(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    """Documented: quorum queues of RabbitMQ 3.x have no priorities (4.x has two levels, and
    sync calls overtake jobs there, see the test above)."""
    import time

    major = int(vhost.broker.ctl("version").strip().split(".")[0])
    start_worker(queue_type="quorum")
    gateway = start_gateway(queue_type="quorum")
    busy = tmp_path / "busy"
    with gateway.client() as http:
        first = submit(http, "sleep", {"seconds": 0.5, "marker": str(busy)}).json()["id"]
        wait_for(busy.exists, what="the worker to be busy")
        backlog = [submit(http, "sleep", {"seconds": 0.5}).json()["id"] for _ in range(4)]
        started = time.monotonic()
        call = http.post("/v1/rpc/echo?timeout=30", json={})
        waited = time.monotonic() - started
        for job_id in [first, *backlog]:
            until(http, job_id, "succeeded")
    assert call.status_code == 200
    if major < 4:
        assert waited > 1.5  # behind the four queued jobs
    else:
        assert waited < 1.0  # overtook them
