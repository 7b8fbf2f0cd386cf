"""The job object of the HTTP API and its states (SPEC: Job object)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from protocol import names
from protocol.replies import ErrorBody


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def rank(self) -> int:
        """States only move forward: a change to a lower or equal rank is refused."""
        return 0 if self is JobStatus.QUEUED else 1 if self is JobStatus.RUNNING else 2


TERMINAL = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED}
)


class CallbackState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Progress(BaseModel):
    fraction: float = Field(ge=0, le=1)
    note: str = ""


class CallbackInfo(BaseModel):
    url: str
    state: CallbackState = CallbackState.PENDING
    attempts: int = 0
    last_error: str | None = None


class Job(BaseModel):
    id: str
    method: str
    status: JobStatus
    result: Any = None
    error: ErrorBody | None = None
    progress: Progress | None = None
    attempts: int = 0
    worker: str | None = None
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    callback: CallbackInfo | None = None


class JobUpdate(BaseModel):
    """One event of a job, as SSE and WebSocket carry it (SPEC 1.1): `event` a state name or
    "progress", `seq` its place in the job's log (from 1), `job` the job as of the event."""

    event: str
    seq: int
    job: Job


# A job may wait queued 30 days at most: finite, and within AMQP's expiration (49.7 days).
JOB_TIMEOUT_MAX_S = 30 * 86400


JOB_BODY_SHAPE = ('a job body is {"params": {...}} (the method\'s params), with optionally '
                  '"callback_url", "priority" (0-9) and "timeout" (seconds)')


def job_body_problem(exc: ValidationError) -> str:
    """What is wrong with a job body, in one line that says what a job body is: a key the
    body does not know is most often params sent without their `{"params": ...}` wrapper."""
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "the body"
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown key {where!r}")
        else:
            problems.append(f"{where}: {error['msg']}")
    return f"{'; '.join(problems)}: {JOB_BODY_SHAPE}"


class JobSubmission(BaseModel):
    """Body of POST /v1/jobs/{method}. Unknown keys are refused (`{"param": ...}` is a typo
    whose job would run with no params)."""

    model_config = ConfigDict(extra="forbid")

    # Strict: `"priority": true` or `"9"` is a client's bug, refused (lax parsing read 1 and 9).
    params: dict[str, Any] = Field(default_factory=dict)
    callback_url: StrictStr | None = None
    priority: StrictInt = Field(default=0, ge=0, le=names.JOB_PRIORITY_MAX)
    timeout: StrictFloat | None = Field(default=None, gt=0, le=JOB_TIMEOUT_MAX_S,
                                        allow_inf_nan=False,
                                        description="seconds the job may wait queued")
