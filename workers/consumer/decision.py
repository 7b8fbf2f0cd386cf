"""What a consumer does with a delivery before any handler runs (SPEC: worker semantics): a pure
function of the request and what the consumer knows about it, so the rules read, and are tested,
in one place (`tests/workers/test_decision.py`).

The order: malformed -> dead-letter · redelivered -> republish with attempt + 1 (or dead-letter
and answer past the maximum) · killed before -> answer, not run again · cancelled -> answer ·
past its deadline -> dead-letter `expired` · invalid params -> answer · run.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any, Protocol

from protocol import DeadReason, ErrorCode, codec, names
from protocol.requests import read_attempt, read_deadline, start_by
from workers.consumer.outcome import Outcome, failure
from workers.consumer.settling import Settle
from workers.handlers import Handler, InvalidParams


class Request(Protocol):
    """What `decide` reads of a delivery (`workers.consumer.delivery.Delivery` is one)."""

    @property
    def correlation_id(self) -> str | None: ...
    @property
    def type(self) -> str | None: ...
    @property
    def reply_to(self) -> str | None: ...
    @property
    def headers(self) -> dict[str, Any]: ...
    body: bytes
    redelivered: bool


@dataclass(frozen=True)
class Run:
    handler: Handler
    params: Any
    attempt: int
    deadline: int | None


@dataclass(frozen=True)
class Known:
    """What the consumer knows beside the request: its pool's handlers, the attempts allowed,
    the host's tombstones (why a request was killed here before: `time_limit`, `cancelled`),
    the cancelled job ids, and the time."""

    pool: str
    handlers: dict[str, Handler]
    max_attempts: int
    tombstone: Callable[[str], str | None]
    cancelled: Container[str]
    now_ms: int


def decide(message: Request, known: Known) -> Run | Settle:
    job_id = message.correlation_id
    if not job_id:
        return Settle(1, dead=(DeadReason.MALFORMED, "no correlation_id"))
    handler = known.handlers.get(message.type or "")
    if handler is None:
        if message.reply_to:
            return Settle(1, reply=failure(
                ErrorCode.UNKNOWN_METHOD, f"pool {known.pool} does not serve {message.type!r}"))
        return Settle(1, dead=(DeadReason.MALFORMED,
                               f"unknown method {message.type!r} and no reply_to"))
    try:
        raw = codec.loads(message.body)
    except ValueError:
        return Settle(1, dead=(DeadReason.MALFORMED, "body is not JSON"))

    maximum = known.max_attempts
    attempt = read_attempt(message.headers)
    # Only a request seen before can have been killed: the tombstones (a scan of the host's
    # table, ~16 % of a consumer's CPU per call when done for every delivery) stay unread for
    # first attempts.
    seen_before = message.redelivered or attempt > 1
    buried = known.tombstone(job_id) if seen_before else None
    if message.redelivered:
        attempt += 1
        if attempt <= maximum and not buried:
            return Settle(attempt, retry=True)
    if attempt > maximum:
        return Settle(attempt, dead=(DeadReason.MAX_ATTEMPTS, f"attempt {attempt} > {maximum}"),
                      reply=failure(ErrorCode.MAX_ATTEMPTS,
                                    f"gave up after {attempt - 1} attempts "
                                    "(RPCFLEET_MAX_ATTEMPTS)"))
    if attempt > 1 and buried:
        return Settle(attempt, reply=killed(buried, handler.time_limit))
    if job_id in known.cancelled:
        return cancelled(attempt)
    deadline = read_deadline(message.headers)
    if too_late(deadline, attempt, message.reply_to, known.now_ms):
        return expired(attempt, message.reply_to, "in the queue", "while queued")
    try:
        params = handler.parse_params(raw)
    except InvalidParams as exc:
        return Settle(attempt, reply=failure(ErrorCode.INVALID_PARAMS, str(exc)))
    return Run(handler, params, attempt, deadline)


def cancelled(attempt: int) -> Settle:
    """A request whose job was cancelled before it started (in the queue, or in its batch)."""
    return Settle(attempt, reply=failure(ErrorCode.CANCELLED,
                                         "the job was cancelled before it started"))


def too_late(deadline: int | None, attempt: int, reply_to: str | None, now: int) -> bool:
    """Whether a request must not start: it is past the deadline it must start by
    (`protocol.requests.start_by`: a job's re-run has none)."""
    bound = start_by(deadline, attempt, reply_to)
    return bound is not None and bound <= now


def expired(attempt: int, reply_to: str | None, where: str, when: str) -> Settle:
    """A request whose deadline passed before it started (in the queue, or in the batch it
    was gathered into): dead-lettered `expired`; only a job is answered, a sync caller gave up
    at its deadline."""
    answer = failure(ErrorCode.EXPIRED, f"the job waited {where} past its deadline")
    return Settle(attempt, dead=(DeadReason.EXPIRED, f"deadline passed {when}"),
                  reply=answer if names.is_durable_reply_to(reply_to) else None)


def killed(reason: str, time_limit: float | None) -> Outcome:
    """The answer to a request whose run here was killed (its tombstone's `reason`)."""
    if reason == "cancelled":
        return failure(ErrorCode.CANCELLED, "the job was cancelled while running")
    return failure(ErrorCode.TIME_LIMIT,
                   f"the handler ran past its time limit of {time_limit} s and was killed")
