"""The shared job store: PostgreSQL, for gateways on several hosts (SPEC 1.1).

The same interface and semantics as the SQLite store (`JobStore`), on psycopg 3's async pool.
Read-modify-write steps run in one transaction with row locks (`FOR UPDATE`); the callback outbox
is claimed with `FOR UPDATE SKIP LOCKED`, so gateways on any number of hosts never claim one
delivery twice and never wait on each other's claims. Every gateway on one database shares one
store id (kept in the database), hence one replies queue: any of them can record any outcome.

Needs the `postgres` extra: `pip install 'rpcfleet[postgres]'`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.ids import time_ordered_id
from gateway.store.base import (
    Delivery,
    IdempotencyConflict,
    NewJob,
    PublishClaim,
    purge_in_batches,
)
from gateway.store.pg_schema import prepare
from gateway.store.rows import (
    CANCELLED_QUEUED,
    COLUMNS,
    NEVER_CONFIRMED,
    RECENT_SQL,
    TERMINAL_EVENTS,
    JobEventRecord,
    events_from_rows,
    job_from_row,
    jobs_from_joined,
    queued_job,
    recent_args,
)
from protocol import ErrorBody, Job, JobStatus, codec

POOL_MAX = 10  # connections per gateway process: the store's calls are short
# How long a statement waits for a connection (psycopg_pool: 30 s): a database that is down
# fails a request in seconds, not half a minute, and an outcome is parked sooner.
POOL_WAIT_S = 5.0
# A database that stops answering costs a request seconds, not forever (issue 22): connecting
# gives up after 5 s, waiting for a row lock after 5 s, any statement after 30 s; each ends as
# an outage (503 `unavailable`, an outcome parked). The index build lifts the last two.
CONNECT_TIMEOUT_S = 5
LOCK_TIMEOUT_MS = 5_000
STATEMENT_TIMEOUT_MS = 30_000
SESSION = {"connect_timeout": CONNECT_TIMEOUT_S,
           "options": f"-c lock_timeout={LOCK_TIMEOUT_MS} "
                      f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"}


class PostgresJobStore:
    purge_batch = 500  # ~32 µs a job at 1M jobs: ~16 ms a batch

    def __init__(self, pool: Any, store_id: str) -> None:
        self._pool = pool
        self.store_id = store_id

    @classmethod
    async def open(cls, dsn: str) -> PostgresJobStore:
        from psycopg_pool import AsyncConnectionPool

        pool = AsyncConnectionPool(dsn, min_size=1, max_size=POOL_MAX, open=False,
                                   kwargs={"autocommit": True, **SESSION}, timeout=POOL_WAIT_S)
        await pool.open(wait=True, timeout=30)
        try:
            store_id = await prepare(pool)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, store_id)

    async def close(self) -> None:
        await self._pool.close()


    async def _one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        async with self._pool.connection() as db:
            row: tuple[Any, ...] | None = await (await db.execute(sql, args)).fetchone()
            return row

    async def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        async with self._pool.connection() as db:
            return list(await (await db.execute(sql, args)).fetchall())

    async def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        async with self._pool.connection() as db:
            return int((await db.execute(sql, args)).rowcount)

    # -- jobs ---------------------------------------------------------------------------------
    async def create(self, job: NewJob) -> tuple[Job, bool]:
        async with self._pool.connection() as db, db.transaction():
            inserted = await (await db.execute(
                "INSERT INTO jobs (id, method, status, created_ms, priority, deadline_ms, "
                "callback_url, idempotency_key, body_hash, published, publish_lease_ms, owner) "
                "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,FALSE,%s,%s) "
                "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
                (job.id, job.method, JobStatus.QUEUED, job.created_ms, job.priority,
                 job.deadline_ms, job.callback_url, job.idempotency_key, job.body_hash,
                 job.publish_lease_ms, job.owner))).fetchone()
            if inserted is not None:  # answered once committed, on leaving the transaction
                created = queued_job(job.id, job.method, job.created_ms, job.callback_url)
                await self._event(db, job.id, "queued", created)
                return created, True
            row = await (await db.execute(
                "SELECT id, body_hash FROM jobs WHERE idempotency_key = %s",
                (job.idempotency_key,))).fetchone()
            assert row is not None
            if row[1] != job.body_hash:
                raise IdempotencyConflict("this Idempotency-Key was used with another body")
        existing = await self.get(str(row[0]))
        assert existing is not None
        return existing, False

    async def delete(self, job_id: str) -> None:
        await self._exec("DELETE FROM jobs WHERE id = %s", (job_id,))

    async def mark_published(self, job_id: str) -> None:
        await self._exec("UPDATE jobs SET published = TRUE WHERE id = %s", (job_id,))

    async def claim_publish(self, job_id: str, now_ms: int, lease_ms: int) -> PublishClaim:
        async with self._pool.connection() as db, db.transaction():
            row = await (await db.execute(
                "SELECT published, status, publish_lease_ms FROM jobs WHERE id = %s FOR UPDATE",
                (job_id,))).fetchone()
            if row is None or row[0] or row[1] != JobStatus.QUEUED:
                return "done"
            if row[2] > now_ms:
                return "held"
            await db.execute("UPDATE jobs SET publish_lease_ms = %s WHERE id = %s",
                             (now_ms + lease_ms, job_id))
            return "claimed"

    async def release_publish(self, job_id: str) -> None:
        await self._exec("UPDATE jobs SET publish_lease_ms = 0 WHERE id = %s AND NOT published",
                         (job_id,))

    async def abandon_unpublished(self, leased_before_ms: int,
                                  at_ms: int) -> list[tuple[str, str]]:
        error = NEVER_CONFIRMED
        async with self._pool.connection() as db, db.transaction():
            rows = list(await (await db.execute(
                "UPDATE jobs SET status = 'failed', error = %s, finished_ms = %s, "
                "published = TRUE, cancel_pending = TRUE WHERE NOT published AND "
                "status = 'queued' AND publish_lease_ms < %s RETURNING id, method, callback_url",
                (error.model_dump_json(), at_ms, leased_before_ms))).fetchall())
            for row in rows:
                if row[2]:  # its caller hears of it like of any other end
                    await db.execute(
                        "INSERT INTO outbox (id, job_id, url, next_ms, finished_ms) "
                        "VALUES (%s,%s,%s,%s,%s) ON CONFLICT (id) DO NOTHING",
                        ("msg_" + time_ordered_id(at_ms), str(row[0]), row[2], at_ms, at_ms))
                await self._event(db, str(row[0]), JobStatus.FAILED)
        return [(str(r[0]), str(r[1])) for r in rows]

    async def get(self, job_id: str) -> Job | None:
        async with self._pool.connection() as db:
            return await self._get_on(db, job_id)

    async def _get_on(self, db: Any, job_id: str) -> Job | None:
        row = await (await db.execute(f"SELECT {COLUMNS} FROM jobs WHERE id = %s",
                                      (job_id,))).fetchone()
        if row is None:
            return None
        outbox = await (await db.execute(
            "SELECT state, attempts, last_error FROM outbox WHERE job_id = %s",
            (job_id,))).fetchone()
        return job_from_row(tuple(row), tuple(outbox) if outbox is not None else None)

    async def recent(self, limit: int, status: str | None = None, method: str | None = None,
                     owner: str | None = None) -> list[Job]:
        # Typed placeholders: PostgreSQL cannot infer the type of "%s IS NULL" alone.
        sql = RECENT_SQL.format(p="%s::text").replace("LIMIT %s::text", "LIMIT %s")
        return jobs_from_joined(await self._all(sql, recent_args(limit, status, method, owner)))

    async def owner(self, job_id: str) -> str | None:
        row = await self._one("SELECT owner FROM jobs WHERE id = %s", (job_id,))
        return str(row[0]) if row is not None and row[0] is not None else None

    async def started(self, job_id: str, worker: str | None, attempt: int, at_ms: int) -> bool:
        return await self._changed(
            job_id, "running",
            "UPDATE jobs SET status = 'running', worker = %s, attempts = GREATEST(attempts, %s), "
            "started_ms = %s, progress_n = 0 WHERE id = %s AND status IN ('queued', 'running') "
            "AND attempts < %s", (worker, attempt, at_ms, job_id, attempt))

    async def progress(self, job_id: str, fraction: float, note: str, n: int | None = None,
                       attempt: int | None = None) -> bool:
        body = codec.dumps({"fraction": fraction, "note": note}).decode()
        if n is None:  # a worker from before 1.2: the same value again is no change
            return await self._changed(job_id, "progress", "UPDATE jobs SET progress = %s "
                                       "WHERE id = %s AND status = 'running' AND progress IS "
                                       "DISTINCT FROM %s", (body, job_id, body))
        # Every gateway hears the worker's event n: it is recorded once, and never after a
        # later one of the same attempt.
        return await self._changed(
            job_id, "progress", "UPDATE jobs SET progress = %s, progress_n = %s WHERE id = %s "
            "AND status = 'running' AND progress_n < %s AND attempts = COALESCE(%s::int, attempts)",
            (body, n, job_id, n, attempt))

    async def progress_recorded(self, job_id: str) -> int:
        rows = await self._all("SELECT progress_n FROM jobs WHERE id = %s", (job_id,))
        return int(rows[0][0]) if rows else 0

    async def _changed(self, job_id: str, event: str, sql: str, args: tuple[Any, ...]) -> bool:
        async with self._pool.connection() as db, db.transaction():
            if (await db.execute(sql, args)).rowcount == 0:
                return False
            await self._event(db, job_id, event)
            return True

    async def _event(self, db: Any, job_id: str, event: str, changed: Job | None = None) -> None:
        """Append an event inside the caller's transaction (it sees the job as just changed, or
        as `changed` says when the caller knows it); the job row is locked by then, so two
        gateways never take one seq."""
        job = None
        if event not in TERMINAL_EVENTS:
            found = changed or await self._get_on(db, job_id)
            job = found.model_dump_json() if found is not None else None
        await db.execute(
            "INSERT INTO events (job_id, seq, event, job) VALUES (%s, (SELECT COALESCE(MAX(seq),"
            " 0) + 1 FROM events WHERE job_id = %s), %s, %s)", (job_id, job_id, str(event), job))

    async def events(self, job_id: str, after: int = 0) -> list[JobEventRecord]:
        rows = await self._all("SELECT seq, event, job FROM events WHERE job_id = %s AND "
                               "seq > %s ORDER BY seq", (job_id, after))
        current = await self.get(job_id) if any(r[2] is None for r in rows) else None
        return events_from_rows(rows, lambda: current)

    async def latest_seqs(self, job_ids: Sequence[str]) -> dict[str, int]:
        rows = await self._all("SELECT job_id, MAX(seq) FROM events WHERE job_id = ANY(%s) "
                               "GROUP BY job_id", (list(job_ids),))
        return {str(r[0]): int(r[1]) for r in rows}

    async def finish(self, job_id: str, status: JobStatus, result: Any, error: ErrorBody | None,
                     at_ms: int, worker: str | None = None, attempt: int | None = None,
                     started_ms: int | None = None) -> str | None:
        return await self._finish(job_id, status, result, error, at_ms, worker, attempt,
                                  started_ms)

    async def _finish(self, job_id: str, status: JobStatus, result: Any,
                      error: ErrorBody | None, at_ms: int, worker: str | None = None,
                      attempt: int | None = None, started_ms: int | None = None,
                      replay_cancel: bool = False) -> str | None:
        async with self._pool.connection() as db, db.transaction():
            row = await (await db.execute(
                "SELECT status, callback_url, method FROM jobs WHERE id = %s FOR UPDATE",
                (job_id,))).fetchone()
            if row is None:
                return None
            if JobStatus(row[0]).terminal:
                if row[0] == JobStatus.CANCELLED:  # the worker saw the cancel: stop replaying it
                    await db.execute("UPDATE jobs SET cancel_pending = FALSE WHERE id = %s",
                                     (job_id,))
                return None
            if row[0] == JobStatus.QUEUED and started_ms is not None:
                # It ran, but its start event has not come: the log shows it running first.
                await db.execute(
                    "UPDATE jobs SET status = 'running', worker = COALESCE(%s, worker), "
                    "attempts = GREATEST(attempts, COALESCE(%s, 1)), started_ms = %s "
                    "WHERE id = %s", (worker, attempt, started_ms, job_id))
                await self._event(db, job_id, JobStatus.RUNNING)
            await db.execute(
                "UPDATE jobs SET status = %s, result = %s, error = %s, finished_ms = %s, "
                "worker = COALESCE(%s, worker), attempts = GREATEST(attempts, COALESCE(%s, 0)), "
                "started_ms = COALESCE(%s, started_ms), cancel_pending = %s WHERE id = %s",
                (status, codec.dumps(result).decode() if result is not None else None,
                 error.model_dump_json() if error is not None else None, at_ms, worker,
                 attempt, started_ms, replay_cancel, job_id))
            if row[1]:
                await db.execute(
                    "INSERT INTO outbox (id, job_id, url, next_ms, finished_ms) "
                    "VALUES (%s,%s,%s,%s,%s) ON CONFLICT (id) DO NOTHING",
                    ("msg_" + time_ordered_id(at_ms), job_id, row[1], at_ms, at_ms))
            await self._event(db, job_id, status)
            return str(row[2])

    async def cancel_queued(self, job_id: str, at_ms: int) -> bool:
        return await self._finish(job_id, JobStatus.CANCELLED, None, CANCELLED_QUEUED, at_ms,
                                  replay_cancel=True) is not None

    async def request_cancel(self, job_id: str) -> None:
        await self._exec("UPDATE jobs SET cancel_pending = TRUE WHERE id = %s AND "
                         "status = 'running'", (job_id,))

    async def pending_cancels(self, since_ms: int) -> list[tuple[str, str]]:
        rows = await self._all("SELECT id, method FROM jobs WHERE cancel_pending AND "
                               "(finished_ms >= %s OR status = 'running')", (since_ms,))
        return [(str(r[0]), str(r[1])) for r in rows]

    async def cancel_seen(self, job_id: str) -> None:
        await self._exec("UPDATE jobs SET cancel_pending = FALSE WHERE id = %s", (job_id,))

    async def purge(self, finished_before_ms: int) -> int:
        async def delete_batch(size: int) -> int:  # rows being written are skipped
            return await self._exec(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE finished_ms < %s "
                "LIMIT %s FOR UPDATE SKIP LOCKED)", (finished_before_ms, size))

        return await purge_in_batches(delete_batch, self.purge_batch)

    # -- outbox -------------------------------------------------------------------------------
    async def claim_deliveries(self, now_ms: int | None, limit: int,
                               lease_ms: int) -> list[Delivery]:
        # SKIP LOCKED: a row another gateway is claiming right now is left to it, not waited for.
        # The lease is on the database's clock, the same for every gateway host.
        rows = await self._all(
            "WITH clock AS (SELECT COALESCE(%s::bigint, (extract(epoch FROM clock_timestamp())"
            " * 1000)::bigint) AS now) "
            "UPDATE outbox SET lease_ms = clock.now + %s FROM clock WHERE outbox.id IN ("
            "SELECT id FROM outbox, clock WHERE state = 'pending' AND next_ms <= clock.now "
            "AND lease_ms <= clock.now ORDER BY next_ms LIMIT %s FOR UPDATE OF outbox SKIP LOCKED)"
            " RETURNING outbox.id, job_id, url, attempts, finished_ms, outbox.lease_ms",
            (now_ms, lease_ms, limit))
        return [Delivery(str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]), int(r[5]))
                for r in rows]

    async def delivery_outcome(self, delivery: Delivery, *, delivered: bool, error: str | None,
                               retry_at_ms: int | None) -> bool:
        state = "delivered" if delivered else ("pending" if retry_at_ms is not None else "failed")
        return bool(await self._exec(
            "UPDATE outbox SET state = %s, attempts = attempts + 1, last_error = %s, "
            "next_ms = COALESCE(%s, next_ms), lease_ms = 0 WHERE id = %s AND lease_ms = %s",
            (state, error, retry_at_ms, delivery.id, delivery.lease)))
