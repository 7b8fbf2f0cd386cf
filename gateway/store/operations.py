"""Every job-store operation, written once for both databases, without I/O.

An operation is a generator of steps (`gateway.store.steps`): it yields each statement and is
sent back what the statement returned. A driver runs the steps on its database: the SQLite store
on its thread inside a group commit's savepoint, the PostgreSQL store on a pooled connection, in
one transaction for a write of several statements. The dialect (`gateway.store.dialect`)
supplies the few words that differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.ids import time_ordered_id
from gateway.store.base import Delivery, IdempotencyConflict, NewJob, PublishClaim
from gateway.store.dialect import Dialect
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
from gateway.store.steps import Steps, changes, one, rows
from protocol import ErrorBody, Job, JobStatus, codec

IN_CHUNK = 500  # bound parameters a statement: SQLite's limit is 999 on older builds


# -- jobs -------------------------------------------------------------------------------------
def create(d: Dialect, job: NewJob) -> Steps[tuple[Job, bool]]:
    # The job its Idempotency-Key names may be deleted between the insert that met it and the
    # reads after (another gateway's publish was refused, on PostgreSQL's read committed): the
    # insert is tried again, and then takes the key.
    while True:
        inserted = yield one(
            "INSERT INTO jobs (id, method, status, created_ms, priority, deadline_ms, "
            "callback_url, idempotency_key, body_hash, published, publish_lease_ms, owner) "
            f"VALUES (?,?,?,?,?,?,?,?,?,{d.false},?,?) ON CONFLICT (idempotency_key) DO NOTHING "
            "RETURNING id", job.id, job.method, JobStatus.QUEUED, job.created_ms, job.priority,
            job.deadline_ms, job.callback_url, job.idempotency_key, job.body_hash,
            job.publish_lease_ms, job.owner)
        if inserted is not None:
            created = queued_job(job.id, job.method, job.created_ms, job.callback_url)
            yield from event(d, job.id, "queued", created)
            return created, True
        row = yield one("SELECT id, body_hash FROM jobs WHERE idempotency_key = ?",
                        job.idempotency_key)
        if row is None:
            continue
        if row[1] != job.body_hash:
            raise IdempotencyConflict("this Idempotency-Key was used with another body")
        existing = yield from get(d, str(row[0]))
        if existing is not None:
            return existing, False


def delete(d: Dialect, job_id: str) -> Steps[int]:
    return (yield from changes("DELETE FROM jobs WHERE id = ?", job_id))


def mark_published(d: Dialect, job_id: str) -> Steps[int]:
    return (yield from changes(f"UPDATE jobs SET published = {d.true} WHERE id = ?", job_id))


def claim_publish(d: Dialect, job_id: str, now_ms: int, lease_ms: int,
                  grace_ms: int) -> Steps[PublishClaim]:
    row = yield one("SELECT published, status, publish_lease_ms FROM jobs WHERE id = ?"
                    f"{d.for_update}", job_id)
    if row is None or row[0] or row[1] != JobStatus.QUEUED:
        return "done"
    if row[2] > now_ms - grace_ms:
        return "held"
    yield from changes("UPDATE jobs SET publish_lease_ms = ? WHERE id = ?", now_ms + lease_ms,
                       job_id)
    return "claimed"


def release_publish(d: Dialect, job_id: str) -> Steps[int]:
    return (yield from changes(
        f"UPDATE jobs SET publish_lease_ms = 0 WHERE id = ? AND {d.is_unset('published')}",
        job_id))


def abandon_unpublished(d: Dialect, leased_before_ms: int,
                        at_ms: int) -> Steps[list[tuple[str, str]]]:
    abandoned = yield rows(
        f"UPDATE jobs SET status = 'failed', error = ?, finished_ms = ?, published = {d.true}, "
        f"cancel_pending = {d.true} WHERE {d.is_unset('published')} AND status = 'queued' AND "
        "publish_lease_ms < ? RETURNING id, method, callback_url",
        NEVER_CONFIRMED.model_dump_json(), at_ms, leased_before_ms)
    for job_id, _, callback_url in abandoned:
        if callback_url:  # its caller hears of it like of any other end
            yield from _outbox_entry(str(job_id), callback_url, at_ms)
        yield from event(d, str(job_id), JobStatus.FAILED)
    return [(str(r[0]), str(r[1])) for r in abandoned]


def get(d: Dialect, job_id: str) -> Steps[Job | None]:
    row = yield one(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", job_id)
    if row is None:
        return None
    outbox = yield one("SELECT state, attempts, last_error FROM outbox WHERE job_id = ?", job_id)
    return job_from_row(tuple(row), tuple(outbox) if outbox is not None else None)


def recent(d: Dialect, limit: int, status: str | None, method: str | None,
           owner: str | None) -> Steps[list[Job]]:
    found = yield rows(RECENT_SQL, *recent_args(limit, status, method, owner))
    return jobs_from_joined(found)


def owner(d: Dialect, job_id: str) -> Steps[str | None]:
    row = yield one("SELECT owner FROM jobs WHERE id = ?", job_id)
    return str(row[0]) if row is not None and row[0] is not None else None


def started(d: Dialect, job_id: str, worker: str | None, attempt: int,
            at_ms: int) -> Steps[bool]:
    # attempts counts starts; only a queued or running job can (re)start.
    return (yield from changed(d, job_id, "running", changes(
        f"UPDATE jobs SET status = 'running', worker = ?, attempts = {d.greatest}(attempts, ?), "
        "started_ms = ?, progress_n = 0 WHERE id = ? AND status IN ('queued', 'running') AND "
        "attempts < ?", worker, attempt, at_ms, job_id, attempt)))


def progress(d: Dialect, job_id: str, fraction: float, note: str, n: int | None,
             attempt: int | None) -> Steps[bool]:
    body = codec.dumps({"fraction": fraction, "note": note}).decode()
    if n is None:  # a worker from before 1.2: the same value again is no change
        return (yield from changed(d, job_id, "progress", changes(
            "UPDATE jobs SET progress = ? WHERE id = ? AND status = 'running' AND progress "
            f"{d.distinct_from} ?", body, job_id, body)))
    # Every gateway process hears the worker's event n: it is recorded once, and never after a
    # later one of the same attempt.
    return (yield from changed(d, job_id, "progress", changes(
        "UPDATE jobs SET progress = ?, progress_n = ? WHERE id = ? AND status = 'running' AND "
        "progress_n < ? AND attempts = COALESCE(CAST(? AS INTEGER), attempts)",
        body, n, job_id, n, attempt)))


def progress_recorded(d: Dialect, job_id: str, attempt: int | None) -> Steps[int]:
    row = yield one("SELECT progress_n, attempts FROM jobs WHERE id = ?", job_id)
    if row is None or (attempt is not None and int(row[1]) < attempt):
        return 0  # the count is an earlier run's: this one's start is not recorded yet
    return int(row[0])


def changed(d: Dialect, job_id: str, name: str, update: Steps[int]) -> Steps[bool]:
    """An update and, when it changed the job, its event: in one transaction."""
    if (yield from update) == 0:
        return False
    yield from event(d, job_id, name)
    return True


def event(d: Dialect, job_id: str, name: str, now: Job | None = None) -> Steps[None]:
    """Append an event inside the current write: it carries the job as just changed (`now`
    when the caller has the job at hand), none for a terminal event. The job's row is written
    (locked) by then, so two gateways never take one seq."""
    job = None
    if name not in TERMINAL_EVENTS:
        found = now or (yield from get(d, job_id))
        job = found.model_dump_json() if found is not None else None
    yield from changes("INSERT INTO events (job_id, seq, event, job) VALUES (?, (SELECT "
                       "COALESCE(MAX(seq), 0) + 1 FROM events WHERE job_id = ?), ?, ?)",
                       job_id, job_id, str(name), job)


SEQ_MAX = 2**31 - 1  # events.seq is an INTEGER: a caller's `after` past it means "past all"


def events(d: Dialect, job_id: str, after: int) -> Steps[list[JobEventRecord]]:
    found = yield rows("SELECT seq, event, job FROM events WHERE job_id = ? AND seq > ? "
                       "ORDER BY seq", job_id, min(after, SEQ_MAX))
    current = (yield from get(d, job_id)) if any(r[2] is None for r in found) else None
    return events_from_rows(found, lambda: current)


def latest_seqs(d: Dialect, job_ids: Sequence[str]) -> Steps[dict[str, int]]:
    latest: dict[str, int] = {}
    for start in range(0, len(job_ids), IN_CHUNK):
        chunk = list(job_ids[start:start + IN_CHUNK])
        found = yield rows(f"SELECT job_id, MAX(seq) FROM events WHERE job_id IN "
                           f"({','.join('?' * len(chunk))}) GROUP BY job_id", *chunk)
        latest.update((str(r[0]), int(r[1])) for r in found)
    return latest


def finish(d: Dialect, job_id: str, status: JobStatus, result: Any, error: ErrorBody | None,
           at_ms: int, worker: str | None = None, attempt: int | None = None,
           started_ms: int | None = None, replay_cancel: bool = False) -> Steps[str | None]:
    """The job's method when this changed it; None for an unknown job or one already final."""
    row = yield one(f"SELECT status, callback_url, method FROM jobs WHERE id = ?{d.for_update}",
                    job_id)
    if row is None:
        return None
    if JobStatus(row[0]).terminal:
        # A worker's outcome for a cancelled job: it saw the cancel, stop replaying it. Not a
        # second cancel of it (two DELETEs at once): that one was not seen by anybody yet.
        if row[0] == JobStatus.CANCELLED and not replay_cancel:
            yield from changes(f"UPDATE jobs SET cancel_pending = {d.false} WHERE id = ?", job_id)
        return None
    if row[0] == JobStatus.QUEUED and started_ms is not None:
        # It ran, but its start event has not come (fire and forget, or behind the reply): the
        # log shows it running before it ends, as it did.
        yield from changes("UPDATE jobs SET status = 'running', worker = COALESCE(?, worker), "
                           f"attempts = {d.greatest}(attempts, COALESCE(?, 1)), started_ms = ? "
                           "WHERE id = ?", worker, attempt, started_ms, job_id)
        yield from event(d, job_id, JobStatus.RUNNING)
    # The reply's own bookkeeping wins over what events said (they may be lost). An outcome from
    # a worker ends any cancel it was asked for; a job cancelled while queued has its cancel
    # replayed until a worker sees it (`replay_cancel`).
    yield from changes(
        "UPDATE jobs SET status = ?, result = ?, error = ?, finished_ms = ?, worker = "
        f"COALESCE(?, worker), attempts = {d.greatest}(attempts, COALESCE(?, 0)), started_ms = "
        "COALESCE(?, started_ms), cancel_pending = ? WHERE id = ?",
        status, codec.dumps(result).decode() if result is not None else None,
        error.model_dump_json() if error is not None else None, at_ms, worker, attempt,
        started_ms, replay_cancel, job_id)
    if row[1]:
        yield from _outbox_entry(job_id, row[1], at_ms)
    yield from event(d, job_id, status)
    return str(row[2])


def cancel_queued(d: Dialect, job_id: str, at_ms: int) -> Steps[bool]:
    """A queued job becomes cancelled now; its cancel is replayed until a worker sees it (one
    write: a crash cannot leave it cancelled with no cancel to replay)."""
    return (yield from finish(d, job_id, JobStatus.CANCELLED, None, CANCELLED_QUEUED, at_ms,
                              replay_cancel=True)) is not None


def request_cancel(d: Dialect, job_id: str) -> Steps[int]:
    return (yield from changes(
        f"UPDATE jobs SET cancel_pending = {d.true} WHERE id = ? AND status = 'running'", job_id))


def pending_cancels(d: Dialect, since_ms: int) -> Steps[list[tuple[str, str]]]:
    found = yield rows(f"SELECT id, method FROM jobs WHERE {d.is_set('cancel_pending')} AND "
                       "(finished_ms >= ? OR status = 'running')", since_ms)
    return [(str(r[0]), str(r[1])) for r in found]


def cancel_seen(d: Dialect, job_id: str) -> Steps[int]:
    return (yield from changes(f"UPDATE jobs SET cancel_pending = {d.false} WHERE id = ?",
                               job_id))


def purge_batch(d: Dialect, finished_before_ms: int, cancels_since_ms: int,
                size: int) -> Steps[int]:
    """At most `size` jobs past retention, with their events and deliveries (rows being written
    by another gateway are skipped). A job something is still owed for stays, however short the
    retention: a callback still pending (retried until its window ends), a cancel still
    replayed (finished since `cancels_since_ms`: a worker that has not heard it would run it)."""
    return (yield from changes(
        "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE finished_ms < ? AND NOT "
        f"({d.is_set('cancel_pending')} AND finished_ms >= ?) AND NOT EXISTS (SELECT 1 FROM "
        "outbox WHERE outbox.job_id = jobs.id AND outbox.state = 'pending') "
        f"LIMIT ?{d.skip_locked('jobs')})", finished_before_ms, cancels_since_ms, size))


# -- outbox -----------------------------------------------------------------------------------
def _outbox_entry(job_id: str, url: str, at_ms: int) -> Steps[int]:
    return (yield from changes(
        "INSERT INTO outbox (id, job_id, url, next_ms, finished_ms) VALUES (?,?,?,?,?) "
        "ON CONFLICT (id) DO NOTHING", "msg_" + time_ordered_id(at_ms), job_id, url, at_ms, at_ms))


def claim_deliveries(d: Dialect, now_ms: int | None, limit: int,
                     lease_ms: int) -> Steps[list[Delivery]]:
    """Lease due deliveries on the database's clock (one clock for every gateway host); a row
    another gateway is claiming right now is left to it, not waited for."""
    # The clock is the same value throughout one statement on both databases. Written inline:
    # a CTE joined in would hide the range on (state, next_ms) from SQLite's planner (it built
    # an index per claim), and one read through scalar subqueries cost SQLite 3x.
    now = f"COALESCE(CAST(? AS BIGINT), {d.clock_ms})"
    found = yield rows(
        f"UPDATE outbox SET lease_ms = {now} + ? WHERE id IN (SELECT id FROM outbox WHERE "
        f"state = 'pending' AND next_ms <= {now} AND lease_ms <= {now} ORDER BY next_ms "
        f"LIMIT ?{d.skip_locked('outbox')}) "
        "RETURNING id, job_id, url, attempts, finished_ms, lease_ms",
        now_ms, lease_ms, now_ms, now_ms, limit)
    return [Delivery(str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]), int(r[5]))
            for r in found]


def delivery_outcome(d: Dialect, delivery: Delivery, delivered: bool, error: str | None,
                     retry_at_ms: int | None) -> Steps[int]:
    """Written only while the delivery's lease is still this claim's."""
    state = "delivered" if delivered else ("pending" if retry_at_ms is not None else "failed")
    return (yield from changes(
        "UPDATE outbox SET state = ?, attempts = attempts + 1, last_error = ?, next_ms = "
        "COALESCE(?, next_ms), lease_ms = 0 WHERE id = ? AND lease_ms = ?",
        state, error, retry_at_ms, delivery.id, delivery.lease))
