"""The request message of the contract, as plain data (SPEC: Request message).

The AMQP client of each side turns a `Request` into its library's message; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol import names


@dataclass(frozen=True, slots=True)
class Request:
    """Properties of a request message; its body is the params JSON object."""

    job_id: str  # message_id = correlation_id
    method: str  # type, and the routing key
    reply_to: str | None
    deadline_ms: int | None  # epoch ms; None: no deadline
    priority: int = 0
    persistent: bool = False
    attempt: int = 1
    trace: dict[str, str] | None = None  # W3C trace context of the caller, if any

    def headers(self) -> dict[str, Any]:
        headers: dict[str, Any] = {names.HEADER_ATTEMPT: self.attempt}
        if self.deadline_ms is not None:
            headers[names.HEADER_DEADLINE] = self.deadline_ms
        if self.trace:
            headers.update(self.trace)
        return headers

    def expiration_ms(self, now_ms: int) -> int | None:
        """Milliseconds to the deadline, for the message's `expiration`."""
        return expiration_ms(self.deadline_ms, now_ms)


def expiration_ms(deadline_ms: int | None, now_ms: int) -> int | None:
    """The one expiration rule for every request message (a gateway's publish, a worker's retry
    copy, a replay): the milliseconds left to its deadline, none without one. At least 1 ms (an
    expiration of 0 may be dropped at once: the message is published and the consumer's deadline
    check decides), at most AMQP's cap (a larger one closes the channel)."""
    if deadline_ms is None:
        return None
    return min(max(deadline_ms - now_ms, 1), names.MAX_EXPIRATION_MS)


def start_by(deadline_ms: int | None, attempt: int, reply_to: str | None) -> int | None:
    """The deadline a delivery must start by, if any (SPEC: worker semantics). A sync caller
    has gone by its deadline. A job's timeout bounds its wait in the queue (not started by then
    -> `expired`): one delivered again after its consumer died (attempt 2 on) ended that wait
    when it was first delivered, and runs again, late or not. (One held unstarted by a consumer
    killed with prefetch above 1 counts as delivered too: nobody can tell it from a start.)"""
    if attempt > 1 and names.is_durable_reply_to(reply_to):
        return None
    return deadline_ms


def read_attempt(headers: dict[str, Any] | None) -> int:
    value = (headers or {}).get(names.HEADER_ATTEMPT, 1)
    try:
        return max(int(value), 1)
    except (TypeError, ValueError):
        return 1


def read_trace(headers: dict[str, Any] | None) -> dict[str, str]:
    """The W3C trace context a request carries (empty when its caller sent none)."""
    found = headers or {}
    return {name: str(found[name]) for name in names.TRACE_HEADERS if name in found}


def read_deadline(headers: dict[str, Any] | None) -> int | None:
    value = (headers or {}).get(names.HEADER_DEADLINE)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
