"""The request message of the contract, as plain data (SPEC: Request message).

The AMQP client of each side turns a `Request` into its library's message; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol import names


@dataclass(frozen=True, slots=True)
class Request:
    job_id: str
    method: str
    body: bytes  # the params JSON object
    reply_to: str | None
    deadline_ms: int | None  # epoch ms; None: no deadline
    priority: int = 0
    persistent: bool = False
    attempt: int = 1
    extra_headers: dict[str, Any] = field(default_factory=dict)

    def headers(self) -> dict[str, Any]:
        headers: dict[str, Any] = {names.HEADER_ATTEMPT: self.attempt, **self.extra_headers}
        if self.deadline_ms is not None:
            headers[names.HEADER_DEADLINE] = self.deadline_ms
        return headers

    def expiration_seconds(self, now_ms: int) -> float | None:
        """Time to the deadline for the message's `expiration` (aio-pika takes seconds)."""
        if self.deadline_ms is None:
            return None
        # The broker refuses an expiration of 0 ms as "already expired" only at the head;
        # keep at least 1 ms so the message is still published and the consumer decides.
        return max(self.deadline_ms - now_ms, 1) / 1000


def read_attempt(headers: dict[str, Any] | None) -> int:
    value = (headers or {}).get(names.HEADER_ATTEMPT, 1)
    try:
        return max(int(value), 1)
    except (TypeError, ValueError):
        return 1


def read_deadline(headers: dict[str, Any] | None) -> int | None:
    value = (headers or {}).get(names.HEADER_DEADLINE)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
