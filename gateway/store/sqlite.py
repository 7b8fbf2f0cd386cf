"""The embedded job store: SQLite in WAL mode, shared by the gateway processes of one host.

Every call runs in one dedicated thread per store (the event loop never blocks on the file), in
the order it was made. Writes are group-committed: the writes waiting when the thread gets to
them run in one `BEGIN IMMEDIATE` transaction (so two processes never interleave them), each in
its own savepoint (one write's error undoes that write alone), and one COMMIT, one fsync, makes
them all durable before any of their callers hears back.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from gateway.ids import time_ordered_id
from gateway.store.base import (
    Delivery,
    IdempotencyConflict,
    NewJob,
    PublishClaim,
    purge_in_batches,
)
from gateway.store.group_commit import GroupCommit
from gateway.store.identity import check_instance
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
from gateway.store.schema import connect
from protocol import ErrorBody, Job, JobStatus, codec
from protocol import now_ms as clock_ms

T = TypeVar("T")


class SqliteJobStore:
    # ~22 µs a job to purge at 1M jobs with time-ordered ids (6-8 ms a batch); rows of the random
    # ids made before 1.2 cost ~240 µs each (~60 ms a batch) until they are purged.
    purge_batch = 250

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists()
        self._db = connect(str(path))
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="jobstore")
        try:
            self.store_id = _store_id(path.with_suffix(".id"), path, adopt=fresh)
        except BaseException:
            self._db.close()
            raise
        self._writes = GroupCommit(self._db)

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, func, *args)

    async def _run_write(self, func: Callable[..., T], *args: Any) -> T:
        """`func` in the next group commit; its result once that commit is durable."""
        return await self._writes.submit(self._thread, func, *args)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write's own savepoint inside the group's transaction: its error undoes it alone."""
        self._db.execute("SAVEPOINT write")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK TO write")
            self._db.execute("RELEASE write")
            raise
        self._db.execute("RELEASE write")

    async def close(self) -> None:
        await self._run(self._db.close)
        self._thread.shutdown(wait=True)

    # -- jobs ---------------------------------------------------------------------------------
    async def create(self, job: NewJob) -> tuple[Job, bool]:
        return await self._run_write(self._create, job)

    def _create(self, job: NewJob) -> tuple[Job, bool]:
        with self._write() as db:
            if job.idempotency_key is not None:
                row = db.execute("SELECT id, body_hash FROM jobs WHERE idempotency_key = ?",
                                 (job.idempotency_key,)).fetchone()
                if row is not None:
                    if row[1] != job.body_hash:
                        raise IdempotencyConflict(
                            "this Idempotency-Key was used with another body")
                    existing = self._get(row[0])
                    assert existing is not None
                    return existing, False
            db.execute(
                "INSERT INTO jobs (id, method, status, created_ms, priority, deadline_ms, "
                "callback_url, idempotency_key, body_hash, published, publish_lease_ms, owner) "
                "VALUES (?,?,?,?,?,?,?,?,?,0,?,?)",
                (job.id, job.method, JobStatus.QUEUED, job.created_ms, job.priority,
                 job.deadline_ms, job.callback_url, job.idempotency_key, job.body_hash,
                 job.publish_lease_ms, job.owner))
            created = queued_job(job.id, job.method, job.created_ms, job.callback_url)
            self._event(job.id, "queued", created)
        return created, True

    async def delete(self, job_id: str) -> None:
        await self._run_write(self._exec, "DELETE FROM jobs WHERE id = ?", (job_id,))

    async def mark_published(self, job_id: str) -> None:
        await self._run_write(self._exec, "UPDATE jobs SET published = 1 WHERE id = ?", (job_id,))

    async def claim_publish(self, job_id: str, now_ms: int, lease_ms: int) -> PublishClaim:
        return await self._run_write(self._claim_publish, job_id, now_ms, lease_ms)

    def _claim_publish(self, job_id: str, now_ms: int, lease_ms: int) -> PublishClaim:
        with self._write() as db:
            row = db.execute("SELECT published, status, publish_lease_ms FROM jobs WHERE id = ?",
                             (job_id,)).fetchone()
            if row is None or row[0] or row[1] != JobStatus.QUEUED:
                return "done"
            if row[2] > now_ms:
                return "held"
            db.execute("UPDATE jobs SET publish_lease_ms = ? WHERE id = ?",
                       (now_ms + lease_ms, job_id))
            return "claimed"

    async def release_publish(self, job_id: str) -> None:
        await self._run_write(self._exec, "UPDATE jobs SET publish_lease_ms = 0 WHERE id = ? "
                              "AND published = 0", (job_id,))

    async def abandon_unpublished(self, leased_before_ms: int,
                                  at_ms: int) -> list[tuple[str, str]]:
        return await self._run_write(self._abandon, leased_before_ms, at_ms)

    def _abandon(self, leased_before_ms: int, at_ms: int) -> list[tuple[str, str]]:
        error = NEVER_CONFIRMED
        with self._write() as db:
            rows = db.execute("SELECT id, method, callback_url FROM jobs WHERE published = 0 "
                              "AND status = 'queued' AND publish_lease_ms < ?",
                              (leased_before_ms,)).fetchall()
            for job_id, _, callback_url in rows:
                db.execute("UPDATE jobs SET status = 'failed', error = ?, finished_ms = ?, "
                           "published = 1, cancel_pending = 1 WHERE id = ?",
                           (error.model_dump_json(), at_ms, job_id))
                if callback_url:  # its caller hears of it like of any other end
                    db.execute("INSERT OR IGNORE INTO outbox (id, job_id, url, next_ms, "
                               "finished_ms) VALUES (?,?,?,?,?)",
                               ("msg_" + time_ordered_id(at_ms), job_id, callback_url, at_ms,
                                at_ms))
                self._event(job_id, JobStatus.FAILED)
        return [(str(r[0]), str(r[1])) for r in rows]

    async def recent(self, limit: int, status: str | None = None, method: str | None = None,
                     owner: str | None = None) -> list[Job]:
        rows = await self._run(lambda: self._db.execute(
            RECENT_SQL.format(p="?"), recent_args(limit, status, method, owner)).fetchall())
        return jobs_from_joined(rows)

    async def owner(self, job_id: str) -> str | None:
        row = await self._run(lambda: self._db.execute(
            "SELECT owner FROM jobs WHERE id = ?", (job_id,)).fetchone())
        return str(row[0]) if row is not None and row[0] is not None else None

    def _exec(self, sql: str, args: tuple[Any, ...]) -> int:
        return self._db.execute(sql, args).rowcount

    async def get(self, job_id: str) -> Job | None:
        return await self._run(self._get, job_id)

    def _get(self, job_id: str) -> Job | None:
        row = self._db.execute(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        outbox = self._db.execute("SELECT state, attempts, last_error FROM outbox "
                                  "WHERE job_id = ?", (job_id,)).fetchone()
        return job_from_row(row, outbox)

    async def started(self, job_id: str, worker: str | None, attempt: int, at_ms: int) -> bool:
        # attempts counts starts; only a queued or running job can (re)start.
        return await self._run_write(self._changed, job_id, "running",
            "UPDATE jobs SET status = 'running', worker = ?, attempts = MAX(attempts, ?), "
            "started_ms = ?, progress_n = 0 WHERE id = ? AND status IN ('queued', 'running') "
            "AND attempts < ?", (worker, attempt, at_ms, job_id, attempt))

    async def progress(self, job_id: str, fraction: float, note: str, n: int | None = None,
                       attempt: int | None = None) -> bool:
        body = codec.dumps({"fraction": fraction, "note": note}).decode()
        if n is None:  # a worker from before 1.2: the same value again is no change
            return await self._run_write(self._changed, job_id, "progress",
                "UPDATE jobs SET progress = ? WHERE id = ? AND status = 'running' AND "
                "progress IS NOT ?", (body, job_id, body))
        # Every gateway process hears the worker's event n: it is recorded once, and never
        # after a later one of the same attempt.
        return await self._run_write(self._changed, job_id, "progress",
            "UPDATE jobs SET progress = ?, progress_n = ? WHERE id = ? AND status = 'running' "
            "AND progress_n < ? AND attempts = COALESCE(?, attempts)",
            (body, n, job_id, n, attempt))

    async def progress_recorded(self, job_id: str) -> int:
        row = await self._run(lambda: self._db.execute(
            "SELECT progress_n FROM jobs WHERE id = ?", (job_id,)).fetchone())
        return int(row[0]) if row else 0

    def _changed(self, job_id: str, event: str, sql: str, args: tuple[Any, ...]) -> bool:
        """An update and, when it changed the job, its event: in one transaction."""
        with self._write() as db:
            if db.execute(sql, args).rowcount == 0:
                return False
            self._event(job_id, event)
            return True

    def _event(self, job_id: str, event: str, changed: Job | None = None) -> None:
        """Append an event inside the current write (it sees the job as just changed, or as
        `changed` says when the caller has just read it)."""
        job = None
        if event not in TERMINAL_EVENTS:
            found = changed or self._get(job_id)
            job = found.model_dump_json() if found is not None else None
        self._db.execute(
            "INSERT INTO events (job_id, seq, event, job) VALUES (?, (SELECT COALESCE(MAX(seq),"
            " 0) + 1 FROM events WHERE job_id = ?), ?, ?)", (job_id, job_id, str(event), job))

    async def events(self, job_id: str, after: int = 0) -> list[JobEventRecord]:
        return await self._run(self._events, job_id, after)

    async def latest_seqs(self, job_ids: Sequence[str]) -> dict[str, int]:
        return await self._run(self._latest_seqs, list(job_ids))

    def _latest_seqs(self, job_ids: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(job_ids), 500):  # SQLite's bound-parameter limit
            chunk = job_ids[start:start + 500]
            found.update(self._db.execute(
                f"SELECT job_id, MAX(seq) FROM events WHERE job_id IN "
                f"({','.join('?' * len(chunk))}) GROUP BY job_id", chunk).fetchall())
        return found

    def _events(self, job_id: str, after: int) -> list[JobEventRecord]:
        rows = self._db.execute("SELECT seq, event, job FROM events WHERE job_id = ? AND "
                                "seq > ? ORDER BY seq", (job_id, after)).fetchall()
        return events_from_rows(rows, lambda: self._get(job_id))

    async def finish(self, job_id: str, status: JobStatus, result: Any, error: ErrorBody | None,
                     at_ms: int, worker: str | None = None, attempt: int | None = None,
                     started_ms: int | None = None) -> str | None:
        return await self._run_write(self._finish, job_id, status, result, error, at_ms, worker,
                               attempt, started_ms)

    def _finish(self, job_id: str, status: JobStatus, result: Any, error: ErrorBody | None,
                at_ms: int, worker: str | None, attempt: int | None,
                started_ms: int | None, replay_cancel: bool = False) -> str | None:
        with self._write() as db:
            row = db.execute("SELECT status, callback_url, method FROM jobs WHERE id = ?",
                             (job_id,)).fetchone()
            if row is None:
                return None
            if JobStatus(row[0]).terminal:
                if row[0] == JobStatus.CANCELLED:  # the worker saw the cancel: stop replaying it
                    db.execute("UPDATE jobs SET cancel_pending = 0 WHERE id = ?", (job_id,))
                return None
            if row[0] == JobStatus.QUEUED and started_ms is not None:
                # It ran, but its start event has not come (fire and forget, or behind the
                # reply): the log shows it running before it ends, as it did.
                db.execute("UPDATE jobs SET status = 'running', worker = COALESCE(?, worker), "
                           "attempts = MAX(attempts, COALESCE(?, 1)), started_ms = ? "
                           "WHERE id = ?", (worker, attempt, started_ms, job_id))
                self._event(job_id, JobStatus.RUNNING)
            db.execute(
                # The reply's own bookkeeping wins over what events said (they may be lost).
                # An outcome from a worker ends any cancel it was asked for; a job cancelled
                # while queued has its cancel replayed until a worker sees it (`replay_cancel`).
                "UPDATE jobs SET status = ?, result = ?, error = ?, finished_ms = ?, "
                "worker = COALESCE(?, worker), attempts = MAX(attempts, COALESCE(?, 0)), "
                "started_ms = COALESCE(?, started_ms), cancel_pending = ? WHERE id = ?",
                (status, codec.dumps(result).decode() if result is not None else None,
                 error.model_dump_json() if error is not None else None, at_ms, worker,
                 attempt, started_ms, int(replay_cancel), job_id))
            if row[1]:
                db.execute("INSERT OR IGNORE INTO outbox (id, job_id, url, next_ms, finished_ms)"
                           " VALUES (?,?,?,?,?)",
                           ("msg_" + time_ordered_id(at_ms), job_id, row[1], at_ms, at_ms))
            self._event(job_id, status)
            return str(row[2])

    async def cancel_queued(self, job_id: str, at_ms: int) -> bool:
        """A queued job becomes cancelled now; its cancel is replayed until a worker sees it
        (one write: a crash cannot leave it cancelled with no cancel to replay)."""
        finish = functools.partial(self._finish, replay_cancel=True)
        return await self._run_write(finish, job_id, JobStatus.CANCELLED, None,
                                     CANCELLED_QUEUED, at_ms, None, None, None) is not None

    async def request_cancel(self, job_id: str) -> None:
        await self._run_write(self._exec, "UPDATE jobs SET cancel_pending = 1 WHERE id = ? AND "
                              "status = 'running'", (job_id,))

    async def pending_cancels(self, since_ms: int) -> list[tuple[str, str]]:
        rows = await self._run(lambda: self._db.execute(
            "SELECT id, method FROM jobs WHERE cancel_pending = 1 AND (finished_ms >= ? OR "
            "status = 'running')", (since_ms,)).fetchall())
        return [(str(r[0]), str(r[1])) for r in rows]

    async def cancel_seen(self, job_id: str) -> None:
        await self._run_write(self._exec, "UPDATE jobs SET cancel_pending = 0 WHERE id = ?",
                              (job_id,))

    async def purge(self, finished_before_ms: int) -> int:
        async def delete_batch(size: int) -> int:  # each batch its own group commit
            return await self._run_write(
                self._exec, "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE "
                "finished_ms < ? LIMIT ?)", (finished_before_ms, size))

        return await purge_in_batches(delete_batch, self.purge_batch)

    # -- outbox -------------------------------------------------------------------------------
    async def claim_deliveries(self, now_ms: int | None, limit: int,
                               lease_ms: int) -> list[Delivery]:
        return await self._run_write(self._claim, now_ms, limit, lease_ms)

    def _claim(self, now_ms: int | None, limit: int, lease_ms: int) -> list[Delivery]:
        now = clock_ms() if now_ms is None else now_ms  # one host: its clock is the store's
        with self._write() as db:
            rows = db.execute(
                "SELECT id, job_id, url, attempts, finished_ms FROM outbox WHERE state = "
                "'pending' AND next_ms <= ? AND lease_ms <= ? ORDER BY next_ms LIMIT ?",
                (now, now, limit)).fetchall()
            for row in rows:  # leased: another process skips it until the lease ends
                db.execute("UPDATE outbox SET lease_ms = ? WHERE id = ?", (now + lease_ms, row[0]))
        return [Delivery(str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]), now + lease_ms)
                for r in rows]

    async def delivery_outcome(self, delivery: Delivery, *, delivered: bool, error: str | None,
                               retry_at_ms: int | None) -> bool:
        state = "delivered" if delivered else ("pending" if retry_at_ms is not None else "failed")
        return bool(await self._run_write(self._exec,
            "UPDATE outbox SET state = ?, attempts = attempts + 1, last_error = ?, "
            "next_ms = COALESCE(?, next_ms), lease_ms = 0 WHERE id = ? AND lease_ms = ?",
            (state, error, retry_at_ms, delivery.id, delivery.lease)))


def _store_id(path: Path, database: Path, *, adopt: bool = False) -> str:
    """This file's identity, kept next to it: the gateways sharing the file (one host) share a
    replies queue named after it; another state dir, even on the same machine, is another
    host. Created once; O_EXCL makes two processes starting together agree on one. The second
    line is the database file's inode: a copy of the directory is another file, and refuses
    to start under the original's id (`gateway.store.identity`). An id file of one line (from
    before 1.2, or after a move) adopts the file it is beside, and so does one beside a database
    file just created (the old one deleted to start afresh: no other store is involved)."""
    instance = f"inode {database.stat().st_ino}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        deadline = time.monotonic() + 5
        while not (text := path.read_text()).endswith("\n") and time.monotonic() < deadline:
            time.sleep(0.01)  # its creator is writing it
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            raise RuntimeError(f"{path} is empty: remove it to give the store a new id") from None
        store_id, recorded = lines[0], (lines[1] if len(lines) > 1 else "")
        if not recorded or (adopt and recorded != instance):
            path.write_text(f"{store_id}\n{instance}\n")
            return store_id
        check_instance(str(database), store_id, recorded, instance,
                       new_id=f"remove {path}",
                       adopt=f"remove the second line of {path}")
        return store_id
    with os.fdopen(fd, "w") as out:
        out.write(f"{uuid.uuid4().hex[:16]}\n{instance}\n")
    return path.read_text().splitlines()[0].strip()
