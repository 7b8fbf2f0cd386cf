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
