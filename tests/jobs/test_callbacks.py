"""Signed callbacks end to end, with a real receiver on loopback."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import standardwebhooks

from tests.support.fleet import StartWorker
from tests.support.gateway import StartGateway
from tests.support.jobs import SECRET, callback_gateway, fetch_job, submit, until
from tests.support.receiver import Receiver
from tests.support.waiting import wait_for


def test_a_signed_callback_verifies_with_the_stock_standardwebhooks_library(
    start_worker: StartWorker, start_gateway: StartGateway, receiver: Receiver
) -> None:
    start_worker()
    gateway = callback_gateway(start_gateway)
    with gateway.client() as http:
        job_id = submit(http, "greet", {"name": "bo"}, callback_url=receiver.url + "/hook"
                         ).json()["id"]
        wait_for(lambda: receiver.requests, what="the callback")
        job = until(http, job_id, "succeeded")
        wait_for(lambda: fetch_job(http, job_id)["callback"]["state"] == "delivered",
                 what="the delivery to be recorded")
    sent = receiver.requests[0]
    payload = standardwebhooks.Webhook(SECRET).verify(sent.body, sent.headers)
    assert payload["id"] == job_id and payload["result"] == "hello bo"
    assert payload["status"] == "succeeded"
    assert sent.path == "/hook"
    assert sent.headers["x-rpcfleet-job-id"] == job_id
    assert sent.headers["x-rpcfleet-delivery"] == "1"
    assert job["callback"]["url"] == receiver.url + "/hook"


def test_a_receiver_failing_twice_gets_attempt_3_with_one_webhook_id(
    start_worker: StartWorker, start_gateway: StartGateway, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503]
    start_worker()
    gateway = callback_gateway(start_gateway)
    with gateway.client() as http:
        job_id = submit(http, "echo", {"n": 1}, callback_url=receiver.url).json()["id"]
        wait_for(lambda: len(receiver.requests) >= 3, what="three attempts")
        final = wait_for(lambda: (j := fetch_job(http, job_id))["callback"]["state"] == "delivered"
                         and j, what="the delivery to be recorded")
    attempts = receiver.requests
    assert len(attempts) == 3
    assert [a.headers["x-rpcfleet-delivery"] for a in attempts] == ["1", "2", "3"]
    assert len({a.headers["webhook-id"] for a in attempts}) == 1
    for sent in attempts:
        standardwebhooks.Webhook(SECRET).verify(sent.body, sent.headers)
    assert final["callback"]["attempts"] == 3 and final["callback"]["last_error"] is None


def test_redirects_are_not_followed_and_a_4xx_ends_delivery(
    start_worker: StartWorker, start_gateway: StartGateway, receiver: Receiver
) -> None:
    receiver.statuses = [302]
    start_worker()
    gateway = callback_gateway(start_gateway)
    with gateway.client() as http:
        job_id = submit(http, "echo", {}, callback_url=receiver.url).json()["id"]
        final = wait_for(lambda: (j := fetch_job(http, job_id))["callback"]["state"] == "failed"
                         and j, what="the delivery to fail")
    assert len(receiver.requests) == 1  # the Location was never visited
    assert "redirect" in final["callback"]["last_error"]


def test_a_callback_survives_a_gateway_killed_while_the_job_runs(
    start_worker: StartWorker, start_gateway: StartGateway, receiver: Receiver, tmp_path: Path
) -> None:
    start_worker()
    state = tmp_path / "shared-state"
    first = callback_gateway(start_gateway, state_dir=state)
    marker = tmp_path / "started"
    with first.client() as http:
        job_id = submit(http, "sleep", {"seconds": 2, "marker": str(marker)},
                         callback_url=receiver.url).json()["id"]
    wait_for(marker.exists, what="the job to start")
    first.proc.signal(signal.SIGKILL)
    first.proc.wait(10)
    second = callback_gateway(start_gateway, state_dir=state)
    wait_for(lambda: receiver.requests, timeout=30, what="the callback after the restart")
    with second.client() as http:
        job = until(http, job_id, "succeeded")
    assert json.loads(receiver.requests[0].body)["id"] == job_id
    assert job["result"]["attempt"] == 1


def test_callback_urls_to_private_addresses_or_without_a_secret_are_refused_atsubmit(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker()
    guarded = start_gateway(callback_secret=SECRET)
    unsigned = start_gateway()
    refused = ["http://127.0.0.1/x", "http://[::1]/x", "http://10.0.0.8/", "http://2130706433/",
               "http://0x7f.1/", "http://[::ffff:127.0.0.1]/", "http://169.254.169.254/latest",
               "ftp://example.com/x", "http:///nohost", "https://example.com/hook\u0001"]
    with guarded.client() as http:
        answers = {url: submit(http, "echo", {}, callback_url=url) for url in refused}
    with unsigned.client() as http:
        no_secret = submit(http, "echo", {}, callback_url="https://example.com/hook")
    for url, answer in answers.items():
        assert (answer.status_code, answer.json()["error"]["code"]) == (422, "invalid_params"), url
    assert no_secret.status_code == 422
    assert "RPCFLEET_CALLBACK_SECRET" in no_secret.json()["error"]["message"]


def test_a_slow_receiver_does_not_hold_up_other_callbacks(
    start_worker: StartWorker, start_gateway: StartGateway, receiver: Receiver
) -> None:
    receiver.slow_paths["/slow"] = 5.0
    start_worker()
    gateway = callback_gateway(start_gateway, callback_attempt_timeout=20)
    with gateway.client() as http:
        slow = submit(http, "echo", {"n": 1}, callback_url=receiver.url + "/slow").json()["id"]
        until(http, slow, "succeeded")
        fast = submit(http, "echo", {"n": 2}, callback_url=receiver.url + "/fast").json()["id"]
        wait_for(lambda: [r for r in receiver.requests if r.path == "/fast"], timeout=4,
                 what="the fast receiver's callback while the slow one stalls")
        pending = fetch_job(http, slow)["callback"]["state"]
    assert pending == "pending"  # the slow delivery is still in flight
    assert fast and [r.status for r in receiver.requests if r.path == "/slow"] == [None]
