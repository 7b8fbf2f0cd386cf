"""Messages a consumer sends back: replies, dead-letter copies, republished attempts."""

from __future__ import annotations

from typing import Any

import aio_pika
from pamqp.commands import Basic as _Basic

from protocol import names
from protocol.clock import now_ms
from protocol.requests import read_deadline
from workers.consumer.delivery import Delivery
from workers.consumer.outcome import Outcome


def reply_properties(request: Delivery, worker: str, attempt: int,
                     outcome: Outcome) -> _Basic.Properties:
    """Properties of a reply, built at the AMQP level: the hot path skips aio-pika's Message.

    They carry the bookkeeping a gateway records (SPEC 1.1, exact job bookkeeping): the attempt,
    the worker, and when the handler started and finished (the reply's time when none ran)."""
    durable = names.is_durable_reply_to(request.reply_to)
    finished = outcome.finished_at or now_ms()
    headers: dict[str, Any] = {names.HEADER_WORKER: worker, names.HEADER_ATTEMPT: attempt,
                               names.HEADER_FINISHED_AT: finished}
    if outcome.started_at is not None:
        headers[names.HEADER_STARTED_AT] = outcome.started_at
    return _Basic.Properties(
        content_type=names.CONTENT_TYPE,
        correlation_id=request.correlation_id,
        message_id=request.correlation_id,
        message_type=request.type,
        headers=headers,
        # Job replies wait in a durable queue for a gateway: persist them. Sync replies go
        # straight to a live requester (direct reply-to): persisting them would only cost.
        delivery_mode=2 if durable else 1,
    )


def _copy(request: Delivery, headers: dict[str, Any]) -> aio_pika.Message:
    deadline = read_deadline(request.headers)
    expiration = None
    if deadline is not None:
        expiration = min(max(deadline - now_ms(), 1), names.MAX_EXPIRATION_MS) / 1000
    return aio_pika.Message(
        request.body,
        content_type=request.content_type,
        correlation_id=request.correlation_id,
        message_id=request.message_id,
        type=request.type,
        reply_to=request.reply_to,
        priority=request.priority,
        delivery_mode=request.delivery_mode,
        expiration=expiration,
        headers=headers,
    )


def dead_letter_message(request: Delivery, pool: str, reason: str,
                        detail: str) -> aio_pika.Message:
    """A copy for `rpcfleet.dlx` carrying why (basic.reject cannot add headers)."""
    headers = dict(request.headers or {})
    headers[names.HEADER_DEAD_REASON] = reason
    headers[names.HEADER_POOL] = pool
    headers[names.HEADER_DEAD_DETAIL] = detail[:500]
    headers[names.HEADER_DEAD_AT] = now_ms()
    message = _copy(request, headers)
    message.expiration = None  # kept for inspection and replay, not to expire again
    return message


def retry_message(request: Delivery, attempt: int) -> aio_pika.Message:
    headers = dict(request.headers or {})
    headers[names.HEADER_ATTEMPT] = attempt
    return _copy(request, headers)
