"""rpcfleet's wire contract as pure data: names, envelopes, codes, (de)serialisation. No I/O."""

from protocol import codec, names
from protocol.clock import now_ms, parse_rfc3339, rfc3339
from protocol.errors import HTTP_STATUS, DeadReason, ErrorCode
from protocol.fleet import (
    CONTROL_ADAPTER,
    PREFETCH_MAX,
    PREFETCH_MIN,
    Cancel,
    JobEvent,
    MethodDoc,
    PrefetchValue,
    Processes,
    ProcessRange,
    Replayed,
    SetPrefetch,
    SetProcesses,
    WorkerEntry,
)
from protocol.jobs import (
    TERMINAL,
    CallbackInfo,
    CallbackState,
    Job,
    JobStatus,
    JobSubmission,
    JobUpdate,
    Progress,
)
from protocol.replies import ErrorBody, Reply
from protocol.requests import Request, read_attempt, read_deadline

__all__ = [
    "CONTROL_ADAPTER",
    "HTTP_STATUS",
    "PREFETCH_MAX",
    "PREFETCH_MIN",
    "TERMINAL",
    "CallbackInfo",
    "CallbackState",
    "Cancel",
    "DeadReason",
    "ErrorBody",
    "ErrorCode",
    "Job",
    "JobEvent",
    "JobStatus",
    "JobSubmission",
    "JobUpdate",
    "MethodDoc",
    "PrefetchValue",
    "ProcessRange",
    "Processes",
    "Progress",
    "Replayed",
    "Reply",
    "Request",
    "SetPrefetch",
    "SetProcesses",
    "WorkerEntry",
    "codec",
    "names",
    "now_ms",
    "parse_rfc3339",
    "read_attempt",
    "read_deadline",
    "rfc3339",
]
