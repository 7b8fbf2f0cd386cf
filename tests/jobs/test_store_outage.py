"""A job store that is down for a while loses no outcome, on a broker that counts every return of
a message (issue 27, RabbitMQ 4.x semantics: from 4.0 a quorum queue has a delivery limit of 20
by default, and every requeue counts until 4.3).

Only RabbitMQ 3.10 runs here, whose quorum queues have no default limit: a policy gives the
gateway's reply queue a tiny one (`delivery-limit: 2`), so a gateway that handed a reply back to
the queue on each store error would see it dropped after two tries. The outcome must instead be
parked and recorded once the database is back."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import httpx
import pytest

from tests.support.faults import TERMINAL_STATES
from tests.support.fleet import StartWorker
from tests.support.gateway import StartGateway, wait_for_workers
from tests.support.jobs import submit
from tests.support.postgres import private_server
from tests.support.rabbit import Vhost
from tests.support.waiting import wait_for


@pytest.mark.slow  # ~20-70 s: the fast step's budget (CI runs it in the slow step)
def test_an_outcome_that_arrives_while_the_database_is_down_is_recorded_once_it_is_back(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    vhost.management("PUT", f"/api/policies/{vhost.name}/tiny-delivery-limit", {
        "pattern": r"^rpcfleet\.(replies|dead-events)", "apply-to": "queues",
        "definition": {"delivery-limit": 2}})
    with tempfile.TemporaryDirectory(prefix="rpcfleet-pg-") as folder:
        Path(folder).chmod(0o755)  # the postgres user must reach it
        database = next(servers := private_server(Path(folder)))
        try:
            start_worker(queue_type="quorum")
            gateway = start_gateway(queue_type="quorum", job_store=database.create_database())
            wait_for_workers(gateway, 1)
            marker = tmp_path / "running"
            with gateway.client() as http:
                job_id = submit(http, "sleep", {"seconds": 1.5, "marker": str(marker)}
                                ).json()["id"]
                wait_for(marker.exists, what="the job to run")
                database.stop()
                down = http.get(f"/v1/jobs/{job_id}")  # the store cannot answer: retry later
                # The reply arrives while the store is down: more store failures than the
                # queue's delivery limit would allow returns.
                wait_for(lambda: gateway.proc.output().count("could not store the outcome")
                         >= 4, timeout=90, what="the gateway to fail to store the outcome")
                database.start_again()

                def ended() -> dict[str, object] | None:
                    answer = http.get(f"/v1/jobs/{job_id}")  # 503 while the pool reconnects
                    if answer.status_code == 200 and answer.json()["status"] in TERMINAL_STATES:
                        return dict(answer.json())
                    return None

                done = wait_for(ended, timeout=60, what="the job's outcome to be recorded")
        finally:
            next(servers, None)
    assert (down.status_code, down.json()["error"]["code"]) == (503, "unavailable")
    assert "retry-after" in down.headers
    assert done["status"] == "succeeded"


@pytest.mark.slow  # a private PostgreSQL server: the fast step's budget
def test_a_job_store_lost_while_a_submit_waits_under_prefer_wait_answers_202_with_the_job(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    """The job was accepted before the wait: the caller learns its id (a 503 without it led to
    a duplicate job on retry)."""
    with tempfile.TemporaryDirectory(prefix="rpcfleet-pg-") as folder:
        Path(folder).chmod(0o755)  # the postgres user must reach it
        database = next(servers := private_server(Path(folder)))
        try:
            start_worker()
            gateway = start_gateway(job_store=database.create_database())
            wait_for_workers(gateway, 1)
            marker = tmp_path / "running"
            answers: list[httpx.Response] = []

            def submit_and_wait() -> None:
                with gateway.client() as http:
                    answers.append(submit(http, "sleep", {"seconds": 20, "marker": str(marker)},
                                          headers={"Prefer": "wait=30"}))

            waiting = threading.Thread(target=submit_and_wait)
            waiting.start()
            wait_for(marker.exists, what="the job to run")
            database.stop()
            waiting.join(timeout=40)
            assert not waiting.is_alive(), "the submit did not answer"
        finally:
            next(servers, None)
    [answer] = answers
    assert answer.status_code == 202, answer.text
    assert answer.json()["id"] and answer.json()["status"] in ("queued", "running")
    assert answer.headers["location"].endswith(answer.json()["id"])
    assert "preference-applied" not in answer.headers
