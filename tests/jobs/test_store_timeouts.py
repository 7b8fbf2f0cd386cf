"""A job store that stops answering costs a request seconds, not forever (issue 22: PostgreSQL
had no statement, lock or connect timeouts: a database that stops answering hung submissions and
outcomes)."""

from __future__ import annotations

import time

import psycopg

from tests.support.fleet import StartWorker
from tests.support.gateway import StartGateway, error_code, wait_for_workers


def test_a_job_row_locked_by_a_stuck_transaction_answers_503_in_seconds(
    pg_dsn: str, start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker()
    gateway = start_gateway(job_store=pg_dsn)
    wait_for_workers(gateway, 1)
    with gateway.client() as http:
        submitted = http.post("/v1/jobs/sleep", json={"params": {"seconds": 60}})
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        with psycopg.connect(pg_dsn) as stuck:  # a session that holds the row and hangs
            stuck.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
            started = time.monotonic()
            cancelled = http.delete(f"/v1/jobs/{job_id}", timeout=60)
            took = time.monotonic() - started
            stuck.rollback()
        assert error_code(cancelled) == (503, "unavailable"), cancelled.text
        assert took < 15, took
        assert cancelled.headers["retry-after"]
        # The row is free again: the same cancel goes through.
        assert http.delete(f"/v1/jobs/{job_id}").status_code == 202  # the running job stops
