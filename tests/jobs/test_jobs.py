"""Jobs end to end: submit, poll, stream, limits, idempotency — real processes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from gateway.jobs.service import body_hash
from gateway.store import NewJob, SqliteJobStore
from protocol import now_ms
from tests.support.fleet import StartWorker
from tests.support.gateway import Gateway, StartGateway
from tests.support.jobs import fetch_job, occupy, submit, until
from tests.support.waiting import wait_for


def test_a_job_is_accepted_at_once_and_polled_to_success(gateway: Gateway) -> None:
    with gateway.client() as http:
        accepted = submit(http, "greet", {"name": "ada"})
        assert accepted.status_code == 202
        body = accepted.json()
        assert accepted.headers["location"] == body["status_url"]
        assert body["status"] == "queued" and body["attempts"] == 0
        done = until(http, body["id"], "succeeded")
    assert done["result"] == "hello ada"
    assert done["attempts"] == 1 and done["worker"].endswith(":basic:0")
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]
    assert done["finished_at"].endswith("Z") and len(done["finished_at"]) == 24


def test_failures_are_recorded_with_their_code(gateway: Gateway) -> None:
    with gateway.client() as http:
        failed = until(http, submit(http, "boom", {"why": "no"}).json()["id"], "failed")
        invalid = until(http, submit(http, "greet", {"times": 1}).json()["id"], "failed")
        unknown = submit(http, "no_such_method", {})
        not_object = http.post("/v1/jobs/greet", json=[1])
        bad_priority = submit(http, "greet", {"name": "x"}, priority=12)
        missing = http.get("/v1/jobs/does-not-exist")
    assert failed["error"] == {"code": "worker_error", "message": "RuntimeError: boom: no"}
    assert invalid["error"]["code"] == "invalid_params"
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_method")
    assert not_object.status_code == 422 and bad_priority.status_code == 422
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")


def test_an_idempotency_key_returns_the_same_job_and_refuses_another_body(gateway: Gateway) -> None:
    key = {"Idempotency-Key": "order-42"}
    with gateway.client() as http:
        first = submit(http, "echo", {"n": 1}, headers=key)
        again = submit(http, "echo", {"n": 1}, headers=key)
        other = submit(http, "echo", {"n": 2}, headers=key)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert (other.status_code, other.json()["error"]["code"]) == (422, "invalid_params")


def test_an_idempotency_key_empty_or_over_255_characters_is_refused_and_nothing_is_queued(
    start_gateway: StartGateway
) -> None:
    """An empty key (or blanks, which the server strips) would be one key for every caller,
    method and body: the second caller would get the first one's job."""
    gateway = start_gateway()
    with gateway.client() as http:
        refused = [submit(http, "echo", {"n": 1}, headers={"Idempotency-Key": key})
                   for key in ("k" * 256, "")]
        listed = http.get("/v1/jobs").json()
    for answer in refused:
        assert (answer.status_code, answer.json()["error"]["code"]) == (422, "invalid_params")
        assert "1 to 255 characters" in answer.json()["error"]["message"]
    assert listed == []


def test_a_job_past_its_time_limit_fails_with_time_limit(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker("tests.pools.limits:pool", pool="limits")
    gateway = start_gateway()
    with gateway.client() as http:
        job = until(http, submit(http, "slow", {"seconds": 30}).json()["id"], "failed")
    assert job["error"]["code"] == "time_limit"


def test_progress_is_seen_mid_run_and_the_event_stream_comes_in_order(
    gateway: Gateway, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    with gateway.client() as http:
        job_id = submit(http, "staged", {"release": str(release)}).json()["id"]
        mid = wait_for(lambda: (j := fetch_job(http, job_id))["progress"] and j,
                       what="progress mid-run")
        events: list[tuple[str, dict[str, Any]]] = []
        with http.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            name, ids = "", []
            for line in stream.iter_lines():
                if line.startswith("id: "):
                    ids.append(int(line[4:]))
                elif line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[6:])))
                    if len(events) == 1:
                        release.touch()  # let the handler finish once we are listening
    assert mid["status"] == "running"
    assert mid["progress"] == {"fraction": 0.5, "note": "half way"}
    names = [n for n, _ in events]
    # A late follower gets every event from seq 1, none coalesced (SPEC 1.1).
    assert names == ["queued", "running", "progress", "progress", "succeeded"]
    assert ids == [1, 2, 3, 4, 5]
    fractions = [e["progress"]["fraction"] for _, e in events if e["progress"]]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert events[-1][1]["result"] == {"released": True}


def test_prefer_wait_answers_200_when_the_job_ends_in_time_else_202(gateway: Gateway) -> None:
    with gateway.client() as http:
        quick = submit(http, "echo", {"x": 1}, headers={"Prefer": "wait=10"})
        slow = submit(http, "sleep", {"seconds": 3}, headers={"Prefer": "wait=0.5"})
    assert quick.status_code == 200 and quick.json()["status"] == "succeeded"
    assert quick.json()["result"] == {"x": 1}
    assert quick.headers["preference-applied"] == "wait=10"
    assert slow.status_code == 202 and slow.json()["status"] in ("queued", "running")


def test_prefer_wait_says_the_wait_it_applied_and_ignores_one_that_is_not_a_number(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker()
    gateway = start_gateway(rpc_timeout_max=20)
    with gateway.client() as http:
        capped = submit(http, "echo", {"x": 1}, headers={"Prefer": "wait=600"})
        spaced = submit(http, "echo", {"x": 2}, headers={"Prefer": "respond-async, wait=5; x"})
        not_one = submit(http, "sleep", {"seconds": 1}, headers={"Prefer": "wait=10abc"})
    assert capped.status_code == 200 and capped.headers["preference-applied"] == "wait=20"
    assert spaced.status_code == 200 and spaced.headers["preference-applied"] == "wait=5"
    assert not_one.status_code == 202 and "preference-applied" not in not_one.headers


def test_a_job_that_waits_past_its_timeout_in_the_queue_expires(
    gateway: Gateway, tmp_path: Path
) -> None:
    busy, late = tmp_path / "busy", tmp_path / "late"
    with gateway.client() as http:
        occupy(http, busy)
        job_id = submit(http, "sleep", {"seconds": 0, "marker": str(late)},
                         timeout=0.3).json()["id"]
        job = until(http, job_id, "expired", timeout=20)
    assert not late.exists()
    assert job["error"]["code"] == "expired"


def test_a_submission_cut_off_before_its_publish_runs_when_submitted_again(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    # A gateway stopped between storing a job and the broker's confirm of its request: the
    # row is there, the message never was, and the caller saw no 202. It retries, same key,
    # past the submitter's lease and the time that submitter could have spent marking it.
    raw = json.dumps({"params": {"name": "ada"}}).encode()
    state = tmp_path / "gateway-0"  # where start_gateway keeps the first gateway's store
    store = SqliteJobStore(state / "jobs.sqlite3")
    now = now_ms()
    asyncio.run(store.create(NewJob(
        id="c0ff" + "0" * 28, method="greet", created_ms=now - 280_000,
        idempotency_key="order-7", body_hash=body_hash("greet", raw),
        publish_lease_ms=now - 260_000)))
    asyncio.run(store.close())
    start_worker()
    gateway = start_gateway(state_dir=state)
    with gateway.client() as http:
        again = http.post("/v1/jobs/greet", content=raw, headers={
            "Idempotency-Key": "order-7", "Content-Type": "application/json"})
        assert again.status_code == 202 and again.json()["id"] == "c0ff" + "0" * 28
        done = until(http, again.json()["id"], "succeeded")
        once_more = http.post("/v1/jobs/greet", content=raw, headers={
            "Idempotency-Key": "order-7", "Content-Type": "application/json"})
    assert done["result"] == "hello ada" and done["attempts"] == 1
    assert once_more.json()["status"] == "succeeded"  # published once: not sent again
