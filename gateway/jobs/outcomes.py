"""From what the broker brings back (a reply, a dead letter) to a job's final state."""

from __future__ import annotations

from typing import Any

from protocol import ErrorBody, ErrorCode, JobStatus, names, replies


def from_reply(body: bytes) -> tuple[JobStatus, Any, ErrorBody | None]:
    reply = replies.decode(body)
    if reply.ok:
        return JobStatus.SUCCEEDED, reply.result, None
    error = reply.error or ErrorBody(code=ErrorCode.WORKER_ERROR, message="no error given")
    final = {ErrorCode.CANCELLED: JobStatus.CANCELLED, ErrorCode.EXPIRED: JobStatus.EXPIRED}
    return final.get(error.code, JobStatus.FAILED), None, error  # type: ignore[call-overload]


def dead_reason(headers: dict[str, Any]) -> str:
    reason = headers.get(names.HEADER_DEAD_REASON)
    if reason:
        return str(reason)
    deaths = headers.get("x-death") or []
    if deaths and isinstance(deaths[0], dict):
        return str(deaths[0].get("reason", "rejected"))
    return "rejected"


def from_dead_letter(headers: dict[str, Any]) -> tuple[JobStatus, ErrorBody]:
    reason = dead_reason(headers)
    if reason == "expired":
        return JobStatus.EXPIRED, ErrorBody(code=ErrorCode.EXPIRED,
                                            message="the job waited in the queue past its timeout")
    if reason == "max_attempts":
        return JobStatus.FAILED, ErrorBody(code=ErrorCode.MAX_ATTEMPTS,
                                           message="the job was started too many times")
    return JobStatus.FAILED, ErrorBody(code=ErrorCode.WORKER_ERROR,
                                       message=f"the request was dead-lettered ({reason})")
