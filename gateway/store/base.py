"""What the gateway needs from a job store. States only move forward; a terminal one is final;
a finish that changes nothing says so (a redelivered reply is harmless)."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from gateway.store.rows import JobEventRecord
from protocol import ErrorBody, Job, JobStatus

# Of a job's request: "claimed" (publish it now), "held" (its submitter is still publishing it),
# "done" (confirmed by the broker, or the job has moved on).
PublishClaim = Literal["claimed", "held", "done"]


SQLITE_OUTAGES = ("locked", "busy", "disk", "unable to open", "full")  # not a bug of ours


def outage_types(postgres: bool = False) -> tuple[type[BaseException], ...]:
    """The exception classes a database outage comes as: sqlite3's, and psycopg's when the
    store is PostgreSQL (`postgres`), or psycopg is loaded already. The app handles them itself
    (`gateway.app`), so an outage is answered 503 and the keep-alive connection stays open (an
    error left to Starlette's last handler is answered too, but uvicorn then closes the
    connection under the client's next request). psycopg is imported only for a PostgreSQL
    store: a SQLite gateway does not carry it (9 MiB of each gateway process, measured)."""
    import sqlite3

    found: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)
    if not postgres and "psycopg" not in sys.modules:
        return found
    try:
        import psycopg
        import psycopg_pool
    except ImportError:  # the postgres extra is not installed
        return found
    return (*found, psycopg.OperationalError, psycopg_pool.PoolTimeout)


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot take a statement right now (down, unreachable,
    locked, full, its pool exhausted, a lock or statement timeout): answered 503 `unavailable`,
    not a 500. A SQL error (a bug) is not one."""
    import sqlite3

    if isinstance(exc, sqlite3.OperationalError):
        return any(word in str(exc).lower() for word in SQLITE_OUTAGES)
    return isinstance(exc, outage_types())


async def purge_in_batches(delete_batch: Callable[[int], Awaitable[int]], size: int) -> int:
    """Run `delete_batch(size)` (one transaction removing at most `size` jobs past retention,
    with their events and deliveries) until a batch comes back short: other writes go between
    the batches. The jobs removed."""
    removed = 0
    while True:
        batch = await delete_batch(size)
        removed += batch
        if batch < size:
            return removed


class IdempotencyConflict(ValueError):
    """The Idempotency-Key was used before with another body."""


@dataclass(frozen=True)
class NewJob:
    id: str
    method: str
    created_ms: int
    priority: int = 0
    deadline_ms: int | None = None
    callback_url: str | None = None
    idempotency_key: str | None = None
    body_hash: str | None = None
    publish_lease_ms: int = 0  # the submitter owns the publish of its request until then
    owner: str | None = None  # fingerprint of the submitting key; it also scopes the
    # Idempotency-Key (stored as "{owner}:{key}", so two callers never share one)


@dataclass(frozen=True)
class Delivery:
    """One callback delivery: `id` is the webhook-id, the same on every attempt."""

    id: str
    job_id: str
    url: str
    attempts: int
    finished_ms: int  # when the job ended: the retry window counts from here
    lease: int = 0  # the claim's lease end (ms): its fence, an outcome is written only under it


class JobStore(Protocol):
    # Identifies the gateways that share this store: job replies come back on the queue named
    # after it (`protocol.names.replies_queue`), so they reach a gateway that can record them.
    store_id: str
    # Jobs purged per transaction, with their events and deliveries: each batch holds the write
    # lock at most ~50 ms with a million jobs stored (bench/store_scale.py), so submissions and
    # outcomes go on between the batches of a purge of millions.
    purge_batch: int

    async def create(self, job: NewJob) -> tuple[Job, bool]:
        """The new job (True), or the existing one for a repeated Idempotency-Key (False)."""
        ...

    async def delete(self, job_id: str) -> None: ...

    async def mark_published(self, job_id: str) -> None:
        """The broker confirmed the job's request."""
        ...

    async def claim_publish(self, job_id: str, now_ms: int, lease_ms: int,
                            grace_ms: int = 0) -> PublishClaim:
        """Take over the publish of a queued job whose request was never confirmed (its
        submitter stopped or failed mid-way) once the submitter's lease has passed by
        `grace_ms` (a lease given up, `release_publish`, at once)."""
        ...

    async def release_publish(self, job_id: str) -> None:
        """A publish failed: the next submission of the same key may claim it at once."""
        ...

    async def abandon_unpublished(self, leased_before_ms: int,
                                  at_ms: int) -> list[tuple[str, str]]:
        """Fail the queued jobs whose requests were never confirmed and that nobody retried;
        their cancels are then pending (replayed). Returns their (id, method)."""
        ...

    async def get(self, job_id: str) -> Job | None: ...

    async def events(self, job_id: str, after: int = 0) -> list[JobEventRecord]:
        """The job's events after `after`, in order: every state and progress change, each
        with its `seq` (from 1) and the job object as of it."""
        ...

    async def latest_seqs(self, job_ids: Sequence[str]) -> dict[str, int]:
        """Per job (of those that have events), the seq of its latest event: one read for
        many followed jobs."""
        ...

    async def recent(self, limit: int, status: str | None = None, method: str | None = None,
                     owner: str | None = None) -> list[Job]:
        """The newest jobs first (at most RECENT_MAX), filtered when a filter is given."""
        ...

    async def owner(self, job_id: str) -> str | None:
        """The fingerprint of the key that submitted the job (None: unknown job, or no keys)."""
        ...

    async def started(self, job_id: str, worker: str | None, attempt: int,
                      at_ms: int) -> bool: ...

    async def progress(self, job_id: str, fraction: float, note: str, n: int | None = None,
                       attempt: int | None = None) -> bool:
        """Record the worker's progress event `n` of `attempt` unless it, or a later one, is
        recorded already (every gateway process hears it). False: nothing changed."""
        ...

    async def progress_recorded(self, job_id: str, attempt: int | None = None) -> int:
        """The number of the last progress event recorded for the job's current attempt; 0
        while `attempt` (when given) has not been recorded as started (the count is an earlier
        run's)."""
        ...

    async def finish(self, job_id: str, status: JobStatus, result: Any, error: ErrorBody | None,
                     at_ms: int, worker: str | None = None, attempt: int | None = None,
                     started_ms: int | None = None) -> str | None:
        """Record a final state; `worker`, `attempt` and the times come from the reply. The
        job's method when this changed it; None when nothing changed (an unknown job, or one
        already final: a redelivered reply)."""
        ...

    async def cancel_queued(self, job_id: str, at_ms: int) -> bool: ...

    async def request_cancel(self, job_id: str) -> bool:
        """A running job's cancel, replayed (with the queued ones) until an outcome comes; False
        when the job is no longer running (it ended meanwhile)."""
        ...

    async def pending_cancels(self, since_ms: int) -> list[tuple[str, str]]:
        """(id, method) of the cancels to replay: of jobs cancelled while queued since
        `since_ms`, and of running jobs asked to stop."""
        ...

    async def cancel_seen(self, job_id: str) -> None: ...

    async def claim_deliveries(self, now_ms: int | None, limit: int,
                               lease_ms: int) -> list[Delivery]:
        """Lease up to `limit` due deliveries until now + `lease_ms`. `now_ms` None: the store's
        own clock (the database server's, for PostgreSQL: one clock for every gateway host)."""
        ...

    async def delivery_outcome(self, delivery: Delivery, *, delivered: bool, error: str | None,
                               retry_at_ms: int | None) -> bool:
        """Record an attempt's outcome if the delivery's lease is still this claim's (False:
        it ran out and another claim took the delivery; nothing is written)."""
        ...

    async def purge(self, finished_before_ms: int, cancels_since_ms: int) -> int:
        """Remove jobs finished before `finished_before_ms`, but those still owed a callback
        or whose cancel is still replayed (finished since `cancels_since_ms`)."""
        ...

    async def close(self) -> None: ...
