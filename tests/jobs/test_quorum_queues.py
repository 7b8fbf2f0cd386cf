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
    assert [job_message_priority(p, "classic") for p in range(10)] == list(range(10))
    assert names.SYNC_PRIORITY > QUORUM_NORMAL_PRIORITY_MAX
