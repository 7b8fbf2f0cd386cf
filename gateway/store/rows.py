"""Job rows as both stores read them: the columns, and the job object built from them."""

from __future__ import annotations

from typing import Any

from protocol import CallbackInfo, ErrorBody, Job, JobStatus, Progress, codec, rfc3339

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
