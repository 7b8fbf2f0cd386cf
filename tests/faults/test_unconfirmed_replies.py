"""A worker's reply the broker does not confirm: its confirming channel is replaced (not closed
and left to aio-pika to reopen: transport.confirms.ConfirmingChannel), and the reply is sent again
on the new one. Slow: `./run test -m slow`, run by CI as its own step."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.fleet import StartWorker
from tests.support.gateway import StartGateway
from tests.support.jobs import occupy, submit, until
from tests.support.rabbit import Vhost, blocked_broker
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def test_a_job_reply_the_broker_never_confirms_is_sent_again_and_the_worker_keeps_serving(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    """Issue 27: a worker's first reply to a quorum reply queue that goes unconfirmed (here the
    broker reads nothing from publishers under a memory alarm) has its confirming channel
    replaced, and the broker does not answer the old channel's close either. The reply is sent
    again once the broker reads, and the worker's later replies are confirmed as before."""
    worker = start_worker(queue_type="quorum")
    gateway = start_gateway(queue_type="quorum")
    with gateway.client() as http:
        first = occupy(http, tmp_path / "started", seconds=3)
        with blocked_broker(vhost):
            wait_for(lambda: "no confirm within" in worker.output(), timeout=60,
                     what="the worker's reply to go unconfirmed")
            time.sleep(8)  # how long the alarm lasts past that: beyond the close's own wait
        assert until(http, first, "succeeded", timeout=60)["result"]["attempt"] == 1
        second = submit(http, "echo", {"after": "the alarm"}).json()["id"]
        assert until(http, second, "succeeded", timeout=30)["result"] == {"after": "the alarm"}
