"""Dead letters as plain data (SPEC: `rpcfleet.dead.{pool}` keeps them for inspection and
replay): what one says about itself, whether it can be replayed, and the headers of its replay.

A dead letter comes from a consumer (header `x-rpcfleet-dead-reason`) or from the broker itself
(a message that expired at the queue's head, or was dropped by a max-length or delivery-limit
policy: header `x-death`). Nothing here does I/O.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

from protocol import names
from protocol.errors import DeadReason
from protocol.requests import read_attempt


class Waiter(StrEnum):
    """Who waits for the reply of the request."""

    SYNC = "sync"  # a gateway's sync call, over direct reply-to: gone once its deadline passed
    JOB = "job"  # a gateway's job: its state is final once the gateway saw the dead letter
    QUEUE = "queue"  # an AMQP client's own reply queue
    NONE = "none"  # fire and forget


class DeadLetter(BaseModel):
    """One dead letter, as `GET /v1/pools/{pool}/dead` and `rpcfleet dead --json` show it."""

    model_config = ConfigDict(frozen=True)

    id: str | None
    method: str | None
    reason: str
    detail: str
    attempt: int
    dead_at_ms: int | None
    waiter: Waiter = Field(description="who waited: none, sync (its caller gave up), job (final "
                                       "in a store), queue (a reply queue of its own)")
    size: int

    @classmethod
    def read(cls, *, correlation_id: str | None, method: str | None, reply_to: str | None,
             headers: dict[str, Any] | None, size: int) -> DeadLetter:
        found = headers or {}
        reason, detail = dead_reason(found)
        dead_at = found.get(names.HEADER_DEAD_AT)
        return cls(id=correlation_id, method=method, reason=reason, detail=detail,
                   attempt=read_attempt(found), size=size, waiter=_waiter(reply_to),
                   dead_at_ms=int(dead_at) if isinstance(dead_at, int) else None)

    @computed_field(description="why it cannot be replayed (None: it can)")  # type: ignore[prop-decorator]
    @property
    def replay_refusal(self) -> str | None:
        """Why this dead letter cannot be replayed, or None when it can."""
        if self.reason == DeadReason.MALFORMED or not self.id or not self.method:
            return "malformed: not a request a consumer can run"
        if self.waiter is Waiter.SYNC:
            return "a sync call: its caller stopped waiting at its deadline"
        if self.waiter is Waiter.JOB:
            return "a job: final in the gateway's store; submit it again"
        return None


def replay_headers(headers: dict[str, Any] | None, deadline_ms: int | None) -> dict[str, Any]:
    """A replay starts afresh: attempt 1, the new deadline (or none), no trace of its death."""
    fresh = {key: value for key, value in (headers or {}).items()
             if not key.startswith("x-rpcfleet-dead") and key not in (
                 names.HEADER_POOL, names.HEADER_DEADLINE, "x-death", "x-first-death-exchange",
                 "x-first-death-queue", "x-first-death-reason", "x-last-death-exchange",
                 "x-last-death-queue", "x-last-death-reason")}
    fresh[names.HEADER_ATTEMPT] = 1
    if deadline_ms is not None:
        fresh[names.HEADER_DEADLINE] = deadline_ms
    return fresh


def dead_letter_headers(headers: dict[str, Any] | None, pool: str, reason: str, detail: str,
                        at_ms: int) -> dict[str, Any]:
    """A request's headers as its copy for `rpcfleet.dlx` carries them: why, where, when (a
    basic.reject cannot add headers, so whoever dead-letters publishes such a copy)."""
    copied = dict(headers or {})
    copied[names.HEADER_DEAD_REASON] = reason
    copied[names.HEADER_POOL] = pool
    copied[names.HEADER_DEAD_DETAIL] = detail[:500]
    copied[names.HEADER_DEAD_AT] = at_ms
    return copied


def dead_reason(headers: dict[str, Any]) -> tuple[str, str]:
    """Why a message was dead-lettered, and a detail: our header, else the broker's x-death
    (as `broker:<reason>`)."""
    reason = headers.get(names.HEADER_DEAD_REASON)
    if reason is not None:
        return str(reason), str(headers.get(names.HEADER_DEAD_DETAIL, ""))
    deaths = headers.get("x-death")
    # The newest death first; a stay in a gateway's parking queue (its expiry back) is not one.
    real = [death for death in deaths if isinstance(death, dict)
            and not str(death.get("queue", "")).startswith(names.PARKED_PREFIX)
            ] if isinstance(deaths, list) else []
    if real:
        broker_reason = str(real[0].get("reason", "unknown"))
        return f"broker:{broker_reason}", f"dead-lettered by the broker ({broker_reason})"
    return "unknown", ""


def _waiter(reply_to: str | None) -> Waiter:
    if not reply_to:
        return Waiter.NONE
    if names.is_direct_reply_to(reply_to):
        return Waiter.SYNC
    if names.is_job_reply_to(reply_to):
        return Waiter.JOB
    return Waiter.QUEUE
