"""No hot query of the job store reads a whole table (issue 22, #2: a store that stays fast when
full). Every statement the store sends while serving jobs is captured, on a seeded and analysed
database of each kind, and the database is asked for its plan: a full scan of jobs, outbox or
events fails the test, naming the statement."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.store import JobStore, NewJob, SqliteJobStore
from gateway.store.postgres import PostgresJobStore
from protocol import ErrorBody, JobStatus

ROWS = 20_000  # finished jobs with a callback delivery and four events each
BIG_TABLES = ("jobs", "outbox", "events")


async def _serve_a_day(store: JobStore) -> None:
    """Every store operation the gateway performs, once each."""
    await store.create(NewJob(id="n1", method="echo", created_ms=10**12, idempotency_key="k1",
                              body_hash="h", publish_lease_ms=10**12 + 5,
                              callback_url="http://127.0.0.1:9/hook"))
    await store.create(NewJob(id="n1b", method="echo", created_ms=10**12, idempotency_key="k1",
                              body_hash="h"))  # the same key again: the first job
    await store.claim_publish("n1", 10**12 + 10, 1_000)
    await store.release_publish("n1")
    await store.mark_published("n1")
    await store.get("n1")
    await store.owner("n1")
    await store.events("n1", 0)
    await store.latest_seqs(["n1", "j5"])
    await store.recent(50)
    await store.recent(50, status="succeeded", method="echo")
    await store.started("n1", "w:p:0", 1, 10**12 + 20)
    await store.progress("n1", 0.5, "half", 1, 1)
    await store.progress_recorded("n1")
    await store.request_cancel("n1")
    await store.pending_cancels(10**12 - 1)
    await store.finish("n1", JobStatus.SUCCEEDED, {"ok": 1}, None, 10**12 + 30, "w:p:0", 1,
                       10**12 + 20)
    await store.cancel_seen("n1")
    await store.create(NewJob(id="n2", method="echo", created_ms=10**12))
    await store.cancel_queued("n2", 10**12 + 40)
    await store.create(NewJob(id="n3", method="echo", created_ms=10**12,
                              publish_lease_ms=10**12 + 1))
    await store.abandon_unpublished(10**12 + 2, 10**12 + 3)
    await store.create(NewJob(id="n4", method="echo", created_ms=10**12))
    await store.delete("n4")
    await store.finish("n5-unknown", JobStatus.FAILED, None,
                       ErrorBody(code="worker_error", message="x"), 10**12)
    for delivery in await store.claim_deliveries(10**12 + 100, 4, 60_000):
        await store.delivery_outcome(delivery, delivered=True, error=None, retry_at_ms=None)
    await store.purge(1_000 + 10, 0)  # the ten oldest seeded jobs


SEED_SQLITE = f"""
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
INSERT INTO jobs (id, method, status, created_ms, finished_ms, attempts, callback_url)
    SELECT 'j' || i, 'echo', 'succeeded', 1000 + i, 1000 + i, 1, 'http://127.0.0.1:9/h' FROM n;
INSERT INTO outbox (id, job_id, url, state, next_ms, finished_ms)
    SELECT 'msg_' || id, id, callback_url, 'delivered', finished_ms, finished_ms FROM jobs;
INSERT INTO events (job_id, seq, event) SELECT id, 1, 'queued' FROM jobs;
INSERT INTO events (job_id, seq, event) SELECT id, 2, 'running' FROM jobs;
INSERT INTO events (job_id, seq, event) SELECT id, 3, 'progress' FROM jobs;
INSERT INTO events (job_id, seq, event) SELECT id, 4, 'succeeded' FROM jobs;
ANALYZE;
"""

SEED_POSTGRES = f"""
INSERT INTO jobs (id, method, status, created_ms, finished_ms, attempts, callback_url)
    SELECT 'j' || i, 'echo', 'succeeded', 1000 + i, 1000 + i, 1, 'http://127.0.0.1:9/h'
    FROM generate_series(1, {ROWS}) AS i;
INSERT INTO outbox (id, job_id, url, state, next_ms, finished_ms)
    SELECT 'msg_' || id, id, callback_url, 'delivered', finished_ms, finished_ms FROM jobs;
INSERT INTO events (job_id, seq, event)
    SELECT id, s, (ARRAY['queued', 'running', 'progress', 'succeeded'])[s]
    FROM jobs, generate_series(1, 4) AS s;
ANALYZE;
"""

# An automatic index is a full scan in disguise: SQLite builds it by reading the whole table,
# on every run of the statement.
FULL_SCAN_SQLITE = re.compile(rf"^(SCAN|SEARCH) ({'|'.join(BIG_TABLES)})($| USING AUTOMATIC)")
FULL_SCAN_POSTGRES = re.compile(rf"Seq Scan on ({'|'.join(BIG_TABLES)})\b")


def _full_scans(plans: dict[str, str], pattern: re.Pattern[str]) -> dict[str, str]:
    return {sql: plan for sql, plan in plans.items()
            if any(pattern.search(line.strip()) for line in plan.splitlines())}


async def test_no_hot_sqlite_query_scans_a_whole_table(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    SqliteJobStore(path)  # the schema
    with sqlite3.connect(path) as db:
        db.executescript(SEED_SQLITE)
    store = SqliteJobStore(path)
    sent: list[str] = []
    store._db.set_trace_callback(sent.append)  # every statement, its parameters inlined
    await _serve_a_day(store)
    store._db.set_trace_callback(None)
    await store.close()
    statements = {s for s in sent if s.lstrip().split(" ", 1)[0].upper()
                  in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")}
    assert len(statements) > 25  # the operations above did reach the database
    with sqlite3.connect(path) as db:
        plans = {sql: "\n".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}"))
                 for sql in statements}
    assert _full_scans(plans, FULL_SCAN_SQLITE) == {}
    assert any("USING INDEX" in plan for plan in plans.values())  # the check can see a plan


async def test_no_hot_postgresql_query_scans_a_whole_table(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await PostgresJobStore.open(pg_dsn)  # the schema, then the rows
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as db:
        await db.execute(SEED_POSTGRES)
    sent: list[tuple[str, Any]] = []
    original: Callable[..., Awaitable[Any]] = psycopg.AsyncCursor.execute

    async def recording(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        if isinstance(query, str):
            sent.append((query, params))
        return await original(self, query, params, **kwargs)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", recording)
    await _serve_a_day(store)
    monkeypatch.undo()
    await store.close()
    statements = {sql: params for sql, params in sent
                  if sql.lstrip().split(" ", 1)[0].upper()
                  in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")}
    assert len(statements) > 25
    plans = {}
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as db:
        for sql, params in statements.items():
            rows = await (await db.execute(f"EXPLAIN {sql}", params)).fetchall()
            plans[sql] = "\n".join(str(row[0]) for row in rows)
    assert _full_scans(plans, FULL_SCAN_POSTGRES) == {}
    assert any("Index Scan" in plan for plan in plans.values())  # the check can see a plan
