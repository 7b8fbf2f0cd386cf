"""202 means confirmed; a 503 without an id means nothing was enqueued; a publish whose outcome
is unknown answers 503 with the job's id and the job ends once (SPEC: jobs, error codes)."""

from __future__ import annotations

from tests.support.fleet import StartWorker
from tests.support.gateway import Gateway, StartGateway, error_code, wait_for_workers
from tests.support.jobs import fetch_job, submit, until
from tests.support.rabbit import Vhost, blocked_broker
from tests.support.waiting import wait_for


def test_an_unconfirmed_job_answers_503_with_its_id_and_ends_once_under_its_key(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker()
    gateway = start_gateway(publish_timeout=1)
    wait_for_workers(gateway, 1)
    key = {"Idempotency-Key": "unknown-outcome-1"}
    with gateway.client() as http:
        with blocked_broker(vhost):
            first = submit(http, "echo", {"n": 1}, headers=key)
            assert error_code(first) == (503, "overloaded")
            job_id = first.json()["error"]["id"]  # the outcome is unknown: the job is kept
            assert fetch_job(http, job_id)["status"] == "queued"
            again = submit(http, "echo", {"n": 1}, headers=key)
            assert again.status_code == 503 and again.json()["error"]["id"] == job_id
        # The broker had it: once unblocked, it runs and is recorded like any job.
        done = until(http, job_id, "succeeded", timeout=30)
        retried = submit(http, "echo", {"n": 1}, headers=key)
    assert done["result"] == {"n": 1}
    assert retried.status_code in (200, 202) and retried.json()["id"] == job_id  # never a second


def test_a_refused_job_answers_503_without_an_id_and_leaves_nothing_behind(
    vhost: Vhost, gateway: Gateway
) -> None:
    wait_for_workers(gateway, 1)
    policy = f"/api/policies/{vhost.name}/full"
    vhost.management("PUT", policy, {"pattern": r"^rpcfleet\.pool\.", "apply-to": "queues",
                                     "definition": {"max-length": 0,
                                                    "overflow": "reject-publish"}})
    key = {"Idempotency-Key": "refused-1"}
    with gateway.client() as http:
        refused = wait_for(lambda: (r := submit(http, "echo", {"n": 2}, headers=key))
                           .status_code == 503 and r, what="the queue to refuse publishes")
        vhost.management("DELETE", policy)
        accepted = wait_for(lambda: (r := submit(http, "echo", {"n": 2}, headers=key))
                            .status_code == 202 and r, what="the queue to accept again")
        done = until(http, accepted.json()["id"], "succeeded")
    assert error_code(refused) == (503, "overloaded")
    assert "id" not in refused.json()["error"]  # definite: nothing was enqueued
    assert done["result"] == {"n": 2} and done["attempts"] == 1


def test_a_job_whose_reply_the_broker_refuses_for_a_while_still_ends_succeeded(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    worker = start_worker()
    gateway = start_gateway()
    wait_for_workers(gateway, 1)
    policy = f"/api/policies/{vhost.name}/replies-full"
    vhost.management("PUT", policy, {"pattern": r"^rpcfleet\.replies\.", "apply-to": "queues",
                                     "definition": {"max-length": 0,
                                                    "overflow": "reject-publish"}})
    with gateway.client() as http:
        job_id = submit(http, "echo", {"n": 3}).json()["id"]
        try:
            wait_for(lambda: "nacked (refused)" in worker.output(), timeout=20,
                     what="the broker to refuse the worker's reply")
        finally:
            vhost.management("DELETE", policy)
        job = until(http, job_id, "succeeded", "failed", timeout=40)
    assert job["status"] == "succeeded" and job["result"] == {"n": 3}
    assert job["attempts"] == 1  # retried as a reply, not run again
