"""A job the broker confirmed exists, whatever the job store says next (issue 22, #5).

When the store fails between the broker's confirm and the write that marks the job published,
the caller is told 503 `unavailable` with the job's id (it may run: it is queued). Before the
fix the job row was deleted while the job ran, its outcome was dropped, and a retry under the
same Idempotency-Key made a second job; then the row was kept, but still marked unpublished, so a
retry once the submitter's publish lease had passed published the same request a second time.
A job store that cannot take the submission at all answers 503 too (`docs/guarantees.md`), not
500, and nothing is queued."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.support.fleet import StartWorker
from tests.support.gateway import StartGateway, error_code, wait_for_workers
from tests.support.waiting import wait_for

# The store's answer to the "published" mark is an outage (a lock timeout), injected by a trigger
# on the real table: what a database under a long lock does to that one statement.
REFUSE_MARK = """
CREATE FUNCTION refuse_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'injected: lock timeout' USING ERRCODE = 'lock_not_available'; END $$;
CREATE TRIGGER refuse_mark BEFORE UPDATE OF published ON jobs FOR EACH ROW
    WHEN (NEW.published AND NOT OLD.published) EXECUTE FUNCTION refuse_mark();
"""


@pytest.mark.slow  # ~25 s: the consumer is kept busy past the submitter's publish lease
def test_a_job_confirmed_by_the_broker_but_not_marked_runs_once_and_keeps_its_id(
    pg_dsn: str, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    start_worker()
    # A short publish timeout: the submitter's publish lease (twice it) passes during the test.
    gateway = start_gateway(job_store=pg_dsn, publish_timeout=1)
    wait_for_workers(gateway, 1)
    log = tmp_path / "effects.log"
    with gateway.client() as http:
        # The only consumer is busy for 4 s: the job stays queued past the publish lease.
        busy = http.post("/v1/jobs/sleep", json={"params": {"seconds": 4}})
        assert busy.status_code == 202, busy.text
        wait_for(lambda: http.get(f"/v1/jobs/{busy.json()['id']}").json()["status"] == "running",
                 timeout=10, what="the consumer to be busy")
        body = {"params": {"log": str(log), "tag": "once"}}
        key = {"Idempotency-Key": "unmarked-1"}
        with psycopg.connect(pg_dsn, autocommit=True) as db:
            db.execute(REFUSE_MARK)
            try:
                refused = http.post("/v1/jobs/record", json=body, headers=key)
            finally:
                db.execute("DROP TRIGGER refuse_mark ON jobs; DROP FUNCTION refuse_mark()")
        assert error_code(refused) == (503, "unavailable"), refused.text
        job_id = refused.json()["error"]["id"]
        assert refused.headers["retry-after"]
        assert http.get(f"/v1/jobs/{job_id}").status_code == 200  # the job was kept

        # The caller retries after the publish lease (2 s), as rpcfleet.client does: the same
        # job, not a second publish of it.
        wait_for(lambda: _lease_passed(pg_dsn, job_id), timeout=10,
                 what="the submitter's publish lease to pass")
        retried = http.post("/v1/jobs/record", json=body, headers=key)
        assert retried.status_code in (200, 202), retried.text
        assert retried.json()["id"] == job_id

        ended = wait_for(lambda: (job := http.get(f"/v1/jobs/{job_id}").json())["status"]
                         in ("succeeded", "failed") and job, timeout=30,
                         what="the job to end")
        assert ended["status"] == "succeeded", ended
        assert ended["result"] == "once"
        # Every copy of the request has had its chance by the time the queue is empty.
        wait_for(lambda: http.get(f"/v1/jobs/{busy.json()['id']}").json()["status"]
                 == "succeeded", timeout=30, what="the busy job to end")
        other = http.post("/v1/jobs/echo", json={"params": {"after": "record"}})
        wait_for(lambda: http.get(f"/v1/jobs/{other.json()['id']}").json()["status"]
                 == "succeeded", timeout=30, what="a job queued after the retry to end")
    assert log.read_text().splitlines() == ["once"]


def _lease_passed(dsn: str, job_id: str) -> bool:
    with psycopg.connect(dsn) as db:
        row = db.execute("SELECT publish_lease_ms < (extract(epoch FROM now()) * 1000)::bigint "
                         "FROM jobs WHERE id = %s", (job_id,)).fetchone()
    return bool(row and row[0])


def test_a_submission_the_store_cannot_take_answers_503_and_queues_nothing(
    pg_dsn: str, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    start_worker()
    gateway = start_gateway(job_store=pg_dsn)
    wait_for_workers(gateway, 1)
    log = tmp_path / "effects.log"
    with gateway.client() as http, psycopg.connect(pg_dsn) as stuck:
        stuck.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")  # a migration holding it
        try:
            refused = http.post("/v1/jobs/record", json={"params": {"log": str(log),
                                                                     "tag": "never"}},
                                timeout=60)
        finally:
            stuck.rollback()
        assert error_code(refused) == (503, "unavailable"), refused.text
        assert refused.headers["retry-after"]
        assert "id" not in refused.json()["error"]  # nothing was created, nothing queued
        after = http.post("/v1/jobs/echo", json={"params": {}})
        assert after.status_code == 202, after.text
        wait_for(lambda: http.get(f"/v1/jobs/{after.json()['id']}").json()["status"]
                 == "succeeded", timeout=30, what="a later job to run")
    assert not log.exists()
