"""Jobs end to end: submit, poll, stream, callbacks, cancels, limits — real processes."""

from __future__ import annotations

import base64
import json
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import standardwebhooks

from tests.support.fleet import StartWorker
from tests.support.gateway import Gateway, StartGateway, wait_for_workers
from tests.support.receiver import Receiver
from tests.support.waiting import wait_for

SECRET = "whsec_" + base64.b64encode(b"rpcfleet-test-secret-0123456789ab").decode()


def _submit(http: httpx.Client, method: str, params: dict[str, Any], **extra: Any
            ) -> httpx.Response:
    headers = extra.pop("headers", None)
    return http.post(f"/v1/jobs/{method}", json={"params": params, **extra}, headers=headers)


def _job(http: httpx.Client, job_id: str) -> dict[str, Any]:
    response = http.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def _until(http: httpx.Client, job_id: str, *statuses: str, timeout: float = 30
           ) -> dict[str, Any]:
    return wait_for(lambda: (job := _job(http, job_id))["status"] in statuses and job,
                    timeout=timeout, what=f"job {job_id} to be {statuses}")


def _callback_gateway(start_gateway: StartGateway, receiver: Receiver, **settings: object
                      ) -> Gateway:
    return start_gateway(callback_secret=SECRET, callback_allow_hosts="127.0.0.1",
                         callback_backoff=0.05, callback_backoff_max=0.2, **settings)


def test_a_job_is_accepted_at_once_and_polled_to_success(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker()
    gateway = start_gateway()
    with gateway.client() as http:
        accepted = _submit(http, "greet", {"name": "ada"})
        assert accepted.status_code == 202
        body = accepted.json()
        assert accepted.headers["location"] == body["status_url"]
        assert body["status"] == "queued" and body["attempts"] == 0
        done = _until(http, body["id"], "succeeded")
    assert done["result"] == "hello ada"
    assert done["attempts"] == 1 and done["worker"].endswith(":basic:0")
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]
    assert done["finished_at"].endswith("Z") and len(done["finished_at"]) == 24


def test_failures_are_recorded_with_their_code(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker()
    gateway = start_gateway()
    with gateway.client() as http:
        failed = _until(http, _submit(http, "boom", {"why": "no"}).json()["id"], "failed")
        invalid = _until(http, _submit(http, "greet", {"times": 1}).json()["id"], "failed")
        unknown = _submit(http, "no_such_method", {})
        not_object = http.post("/v1/jobs/greet", json=[1])
        bad_priority = _submit(http, "greet", {"name": "x"}, priority=12)
        missing = http.get("/v1/jobs/does-not-exist")
    assert failed["error"] == {"code": "worker_error", "message": "RuntimeError: boom: no"}
    assert invalid["error"]["code"] == "invalid_params"
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_method")
    assert not_object.status_code == 422 and bad_priority.status_code == 422
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")


def test_a_signed_callback_verifies_with_the_stock_standardwebhooks_library(
    start_worker: StartWorker, start_gateway: StartGateway, receiver: Receiver
) -> None:
    start_worker()
    gateway = _callback_gateway(start_gateway, receiver)
    with gateway.client() as http:
        job_id = _submit(http, "greet", {"name": "bo"}, callback_url=receiver.url + "/hook"
                         ).json()["id"]
        wait_for(lambda: receiver.requests, what="the callback")
        job = _until(http, job_id, "succeeded")
        wait_for(lambda: _job(http, job_id)["callback"]["state"] == "delivered",
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
    gateway = _callback_gateway(start_gateway, receiver)
    with gateway.client() as http:
        job_id = _submit(http, "echo", {"n": 1}, callback_url=receiver.url).json()["id"]
        wait_for(lambda: len(receiver.requests) >= 3, what="three attempts")
        final = wait_for(lambda: (j := _job(http, job_id))["callback"]["state"] == "delivered"
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
    gateway = _callback_gateway(start_gateway, receiver)
    with gateway.client() as http:
        job_id = _submit(http, "echo", {}, callback_url=receiver.url).json()["id"]
        final = wait_for(lambda: (j := _job(http, job_id))["callback"]["state"] == "failed"
                         and j, what="the delivery to fail")
    assert len(receiver.requests) == 1  # the Location was never visited
    assert "redirect" in final["callback"]["last_error"]


def test_a_callback_survives_a_gateway_killed_while_the_job_runs(
    start_worker: StartWorker, start_gateway: StartGateway, receiver: Receiver, tmp_path: Path
) -> None:
    start_worker()
    state = tmp_path / "shared-state"
    first = _callback_gateway(start_gateway, receiver, state_dir=state)
    marker = tmp_path / "started"
    with first.client() as http:
        job_id = _submit(http, "sleep", {"seconds": 2, "marker": str(marker)},
                         callback_url=receiver.url).json()["id"]
    wait_for(marker.exists, what="the job to start")
    first.proc.signal(signal.SIGKILL)
    first.proc.wait(10)
    second = _callback_gateway(start_gateway, receiver, state_dir=state)
    wait_for(lambda: receiver.requests, timeout=30, what="the callback after the restart")
    with second.client() as http:
        job = _until(http, job_id, "succeeded")
    assert json.loads(receiver.requests[0].body)["id"] == job_id
    assert job["result"]["attempt"] == 1


def test_callback_urls_to_private_addresses_or_without_a_secret_are_refused_at_submit(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker()
    guarded = start_gateway(callback_secret=SECRET)
    unsigned = start_gateway()
    refused = ["http://127.0.0.1/x", "http://[::1]/x", "http://10.0.0.8/", "http://2130706433/",
               "http://0x7f.1/", "http://[::ffff:127.0.0.1]/", "http://169.254.169.254/latest",
               "ftp://example.com/x", "http:///nohost"]
    with guarded.client() as http:
        answers = {url: _submit(http, "echo", {}, callback_url=url) for url in refused}
    with unsigned.client() as http:
        no_secret = _submit(http, "echo", {}, callback_url="https://example.com/hook")
    for url, answer in answers.items():
        assert (answer.status_code, answer.json()["error"]["code"]) == (422, "invalid_params"), url
    assert no_secret.status_code == 422
    assert "RPCFLEET_CALLBACK_SECRET" in no_secret.json()["error"]["message"]


def test_an_idempotency_key_returns_the_same_job_and_refuses_another_body(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker()
    gateway = start_gateway()
    key = {"Idempotency-Key": "order-42"}
    with gateway.client() as http:
        first = _submit(http, "echo", {"n": 1}, headers=key)
        again = _submit(http, "echo", {"n": 1}, headers=key)
        other = _submit(http, "echo", {"n": 2}, headers=key)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert (other.status_code, other.json()["error"]["code"]) == (422, "invalid_params")


def test_a_cancelled_queued_job_never_runs(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    start_worker()
    gateway = start_gateway()
    busy, queued = tmp_path / "busy", tmp_path / "queued"
    with gateway.client() as http:
        blocker = _submit(http, "sleep", {"seconds": 1.5, "marker": str(busy)}).json()["id"]
        wait_for(busy.exists, what="the worker to be busy")
        victim = _submit(http, "sleep", {"seconds": 0, "marker": str(queued)}).json()["id"]
        cancel = http.delete(f"/v1/jobs/{victim}")
        after = _submit(http, "echo", {"after": True}).json()["id"]
        _until(http, blocker, "succeeded")
        _until(http, after, "succeeded")  # FIFO: the cancelled one was taken before this
        again = http.delete(f"/v1/jobs/{victim}")
    assert cancel.status_code == 202 and cancel.json()["status"] == "cancelled"
    assert not queued.exists()
    assert (again.status_code, again.json()["error"]["code"]) == (409, "conflict")


def test_a_running_job_is_cancelled_within_seconds_without_reloading_the_cache(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    start_worker()
    gateway = start_gateway()
    marker = tmp_path / "started"
    with gateway.client() as http:
        before = http.post("/v1/rpc/whoami", json={}).json()["result"]
        job_id = _submit(http, "sleep", {"seconds": 60, "marker": str(marker)}).json()["id"]
        wait_for(lambda: _job(http, job_id)["status"] == "running", what="the job to run")
        assert http.delete(f"/v1/jobs/{job_id}").status_code == 202
        job = _until(http, job_id, "cancelled", timeout=10)
        after = wait_for(lambda: _whoami(http), timeout=20, what="the replacement consumer")
    assert job["error"]["code"] == "cancelled"
    assert after["pid"] != before["pid"]  # the consumer exited and was replaced
    assert (after["loaded_by"], after["loaded_at"]) == (before["loaded_by"], before["loaded_at"])


def _whoami(http: httpx.Client) -> dict[str, Any] | None:
    response = http.post("/v1/rpc/whoami?timeout=2", json={})
    return response.json()["result"] if response.status_code == 200 else None


def test_a_job_past_its_time_limit_fails_with_time_limit(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker("tests.pools.limits:pool", pool="limits")
    gateway = start_gateway()
    with gateway.client() as http:
        job = _until(http, _submit(http, "slow", {"seconds": 30}).json()["id"], "failed")
    assert job["error"]["code"] == "time_limit"


def test_progress_is_seen_mid_run_and_the_event_stream_comes_in_order(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    start_worker()
    gateway = start_gateway()
    release = tmp_path / "release"
    with gateway.client() as http:
        job_id = _submit(http, "staged", {"release": str(release)}).json()["id"]
        mid = wait_for(lambda: (j := _job(http, job_id))["progress"] and j,
                       what="progress mid-run")
        events: list[tuple[str, dict[str, Any]]] = []
        with http.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            name = ""
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[6:])))
                    if len(events) == 1:
                        release.touch()  # let the handler finish once we are listening
    assert mid["status"] == "running"
    assert mid["progress"] == {"fraction": 0.5, "note": "half way"}
    names = [n for n, _ in events]
    assert names[0] == "running" and names[-1] == "succeeded"
    fractions = [e["progress"]["fraction"] for _, e in events if e["progress"]]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert events[-1][1]["result"] == {"released": True}


def test_prefer_wait_answers_200_when_the_job_ends_in_time_else_202(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker()
    gateway = start_gateway()
    with gateway.client() as http:
        quick = _submit(http, "echo", {"x": 1}, headers={"Prefer": "wait=10"})
        slow = _submit(http, "sleep", {"seconds": 3}, headers={"Prefer": "wait=0.5"})
    assert quick.status_code == 200 and quick.json()["status"] == "succeeded"
    assert quick.json()["result"] == {"x": 1}
    assert quick.headers["preference-applied"] == "wait=10"
    assert slow.status_code == 202 and slow.json()["status"] in ("queued", "running")


def test_a_job_that_waits_past_its_timeout_in_the_queue_expires(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    start_worker()
    gateway = start_gateway()
    busy, late = tmp_path / "busy", tmp_path / "late"
    with gateway.client() as http:
        _submit(http, "sleep", {"seconds": 1.5, "marker": str(busy)})
        wait_for(busy.exists, what="the worker to be busy")
        job_id = _submit(http, "sleep", {"seconds": 0, "marker": str(late)},
                         timeout=0.3).json()["id"]
        job = _until(http, job_id, "expired", timeout=20)
    assert not late.exists()
    assert job["error"]["code"] == "expired"


def test_a_new_consumer_learns_of_cancels_sent_before_it_started(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = start_gateway()
    marker = tmp_path / "ran"
    first = start_worker()  # declares the queue, then goes away
    wait_for_workers(gateway, 1)
    first.stop()
    with gateway.client() as http:
        job_id = _submit(http, "sleep", {"seconds": 0, "marker": str(marker)}).json()["id"]
        assert http.delete(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
        start_worker()
        check = _submit(http, "echo", {}).json()["id"]
        _until(http, check, "succeeded")
    assert not marker.exists()
    assert os.environ.get("RPCFLEET_AMQP_URL") is None  # settings came from the fixtures only
