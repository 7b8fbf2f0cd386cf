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
    starts: int | None  # the job's starts it vouches for (`starts_vouched`)
    started_ms: int | None
    finished_ms: int | None
    progress_events: int | None = None  # sent by the run before this reply (workers of 1.2)


def _number(headers: dict[str, Any], name: str) -> int | None:
    value = headers.get(name)
    return int(value) if isinstance(value, int | float) and value > 0 else None


def reply_facts(headers: dict[str, Any]) -> ReplyFacts:
    worker = headers.get(names.HEADER_WORKER)
    return ReplyFacts(str(worker) if worker else None, starts_vouched(headers),
                      _number(headers, names.HEADER_STARTED_AT),
                      _number(headers, names.HEADER_FINISHED_AT),
                      _number(headers, names.HEADER_PROGRESS_EVENTS))


def starts_vouched(headers: dict[str, Any]) -> int | None:
    """How many times the job started, by a message about its request (a reply, a dead letter;
    SPEC: `attempts` counts starts). Its `x-rpcfleet-attempt` is the attempt that delivery was,
    and the handler ran in it only when the message says when (`x-rpcfleet-started-at`).
    Otherwise that attempt ended before any start (expired, invalid params, the answer of a
    run killed before, past the maximum, dead-lettered by the broker) and vouches for the starts
    before it, one fewer. None when the message says nothing (a worker before 1.1)."""
    attempt = _number(headers, names.HEADER_ATTEMPT)
    if attempt is None:
        return None
    return attempt if _number(headers, names.HEADER_STARTED_AT) is not None else attempt - 1


def from_dead_letter(headers: dict[str, Any], started: bool = False
                     ) -> tuple[JobStatus, ErrorBody]:
    """A job's end from its request's dead letter; `started`: the job is known to have started
    (the SPEC's `expired` means not started by its deadline)."""
    reason, _ = dead_reason(headers)
    if reason in ("expired", "broker:expired") and started:
        # Its consumer was lost mid-run after the deadline: the request, back in the queue,
        # keeps its expiration (on the wire), and the broker dropped it there.
        return JobStatus.FAILED, ErrorBody(
            code=ErrorCode.WORKER_ERROR,
            message="the job's consumer was lost while running it, and its redelivery "
                    "expired in the queue at the job's timeout")
    if reason in ("expired", "broker:expired"):
        return JobStatus.EXPIRED, ErrorBody(code=ErrorCode.EXPIRED,
                                            message="the job waited in the queue past its timeout")
    if reason == "max_attempts":
        return JobStatus.FAILED, ErrorBody(code=ErrorCode.MAX_ATTEMPTS,
                                           message="the job was started too many times")
    return JobStatus.FAILED, ErrorBody(code=ErrorCode.WORKER_ERROR,
                                       message=f"the request was dead-lettered ({reason})")
