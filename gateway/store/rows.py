"""Job rows as both stores read them: the columns, and the job object built from them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from protocol import CallbackInfo, ErrorBody, Job, JobStatus, Progress, codec, rfc3339

# The errors the stores themselves write (both stores, the same words).
NEVER_CONFIRMED = ErrorBody(code="overloaded", message="the broker never confirmed its request "
                            "(it was down, or the submitting gateway stopped)")
CANCELLED_QUEUED = ErrorBody(code="cancelled", message="cancelled while queued")

TERMINAL_EVENTS = frozenset(str(status) for status in JobStatus if status.terminal)


@dataclass(frozen=True)
class JobEventRecord:
    """One event of a job's log: `seq` from 1, `event` a state name or "progress", `job` the job
    object as of the event."""

    seq: int
    event: str
    job: Job


def events_from_rows(rows: Sequence[Sequence[Any]],
                     current: Callable[[], Job | None]) -> list[JobEventRecord]:
    """(seq, event, job JSON or NULL) rows: a terminal event's job is the job as it is now."""
    records = []
    for seq, event, data in rows:
        job = Job.model_validate_json(data) if data is not None else current()
        if job is not None:
            records.append(JobEventRecord(int(seq), str(event), job))
    return records


COLUMNS = ("id, method, status, result, error, progress, attempts, worker, created_ms, "
           "started_ms, finished_ms, callback_url")
# The newest jobs, with their callback's state (one query); the filters are optional (NULL:
# any), typed (PostgreSQL cannot infer the type of "? IS NULL" alone).
_FILTER = "(CAST(? AS TEXT) IS NULL OR j.{0} = CAST(? AS TEXT))"
RECENT_SQL = ("SELECT " + ", ".join("j." + column.strip() for column in COLUMNS.split(","))
              + ", o.state, o.attempts, o.last_error FROM jobs j LEFT JOIN outbox o ON "
              "o.job_id = j.id WHERE " + " AND ".join(_FILTER.format(column) for column in
                                                      ("status", "method", "owner"))
              + " ORDER BY j.created_ms DESC LIMIT ?")
RECENT_MAX = 200


def recent_args(limit: int, status: str | None, method: str | None,
                owner: str | None) -> tuple[Any, ...]:
    return (status, status, method, method, owner, owner, max(1, min(limit, RECENT_MAX)))


def jobs_from_joined(rows: Sequence[Sequence[Any]]) -> list[Job]:
    """Rows of RECENT_SQL: the job's columns, then its outbox row's (NULLs when none)."""
    width = len(COLUMNS.split(","))
    return [job_from_row(tuple(row[:width]), tuple(row[width:]) if row[width] is not None
                         else None) for row in rows]


def queued_job(job_id: str, method: str, created_ms: int, callback_url: str | None) -> Job:
    """A job as its store reads it back the moment it is created (queued, nothing else yet),
    without reading it back: the submit's answer and its `queued` event."""
    return job_from_row((job_id, method, JobStatus.QUEUED, None, None, None, 0, None,
                         created_ms, None, None, callback_url), None)


def job_from_row(row: tuple[Any, ...], outbox: tuple[Any, ...] | None) -> Job:
    (job_id, method, status, result, error, progress, attempts, worker, created, started,
     finished, callback_url) = row
    callback = None
    if callback_url:
        state, tries, last_error = outbox if outbox is not None else ("pending", 0, None)
        callback = CallbackInfo(url=callback_url, state=state, attempts=tries,
                                last_error=last_error)
    return Job(
        id=job_id, method=method, status=JobStatus(status),
        result=codec.loads(result) if result is not None else None,
        error=ErrorBody.model_validate_json(error) if error else None,
        progress=Progress.model_validate_json(progress) if progress else None,
        attempts=attempts, worker=worker, created_at=rfc3339(created),
        started_at=rfc3339(started) if started else None,
        finished_at=rfc3339(finished) if finished else None, callback=callback)
