"""From what the broker brings back (a reply, a dead letter) to a job's final state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol import ErrorBody, ErrorCode, JobStatus, names, replies
from protocol.dead import dead_reason


def from_reply(body: bytes) -> tuple[JobStatus, Any, ErrorBody | None]:
    reply = replies.decode(body)
    if reply.ok:
        return JobStatus.SUCCEEDED, reply.result, None
    error = reply.failed_with
    final = {ErrorCode.CANCELLED: JobStatus.CANCELLED, ErrorCode.EXPIRED: JobStatus.EXPIRED}
    if error.status is not None:  # an error the handler meant (CallError): whatever its code
        return JobStatus.FAILED, None, error
    return final.get(error.code, JobStatus.FAILED), None, error  # type: ignore[call-overload]


@dataclass(frozen=True)
class ReplyFacts:
    """The bookkeeping a worker's reply carries (SPEC 1.1): the job object takes it from here
    even when the started/progress events were lost."""

    worker: str | None
    attempt: int | None
    started_ms: int | None
    finished_ms: int | None
    progress_events: int | None = None  # sent by the run before this reply (workers of 1.2)


def reply_facts(headers: dict[str, Any]) -> ReplyFacts:
    def number(name: str) -> int | None:
        value = headers.get(name)
        return int(value) if isinstance(value, int | float) and value > 0 else None

    worker = headers.get(names.HEADER_WORKER)
    return ReplyFacts(str(worker) if worker else None, number(names.HEADER_ATTEMPT),
                      number(names.HEADER_STARTED_AT), number(names.HEADER_FINISHED_AT),
                      number(names.HEADER_PROGRESS_EVENTS))


def from_dead_letter(headers: dict[str, Any]) -> tuple[JobStatus, ErrorBody]:
    reason, _ = dead_reason(headers)
    if reason in ("expired", "broker:expired"):
        return JobStatus.EXPIRED, ErrorBody(code=ErrorCode.EXPIRED,
                                            message="the job waited in the queue past its timeout")
    if reason == "max_attempts":
        return JobStatus.FAILED, ErrorBody(code=ErrorCode.MAX_ATTEMPTS,
                                           message="the job was started too many times")
    return JobStatus.FAILED, ErrorBody(code=ErrorCode.WORKER_ERROR,
                                       message=f"the request was dead-lettered ({reason})")
