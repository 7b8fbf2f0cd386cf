"""Messages a consumer sends back: replies (its copies of a request, for a retry or a dead
letter, are `transport.copies`).

A sync reply and the ack of its request go in one write on the request's own channel
(`reply_then_ack`). Why this is safe: the broker handles the frames of one channel in the order
they arrive, so the ack takes effect only after the reply has been routed. For a transient reply
to direct reply-to, that is all a publisher confirm would say (the broker confirms such a publish
as soon as it has routed it). Job replies are different: persistent, to a durable queue, and
confirmed before the ack (see `Dispatcher`).

Why one write: at prefetch 1 a consumer's cycle is deliver, run, reply, ack, next delivery. Each
frame batch aiormq writes is a system call and a TCP segment the broker reads; py-spy put about
a third of the worker's CPU in socket writes. Sending the reply and the ack in one batch, after
the reply, saves a write per message and a read per message at the broker.

aiormq has no call for "these frames together": we marshal them with its `ChannelFrame` and queue
them on the channel's writer, as its own `basic_publish` does. That is only correct on a channel
without publisher confirms (a confirming channel numbers its publishes in aiormq), so the
function refuses one.
"""

from __future__ import annotations

from typing import Any

import aiormq
from aiormq.abc import ChannelFrame
from pamqp.base import Frame
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from protocol import names
from protocol.clock import now_ms
from workers.consumer.delivery import Delivery
from workers.consumer.outcome import Outcome


def reply_properties(request: Delivery, worker: str, attempt: int,
                     outcome: Outcome) -> Basic.Properties:
    """Properties of a reply, built at the AMQP level: the hot path skips aio-pika's Message.

    They carry the bookkeeping a gateway records (SPEC 1.1, exact job bookkeeping): the attempt,
    the worker, and when the handler started and finished (the reply's time when none ran)."""
    durable = names.is_durable_reply_to(request.reply_to)
    finished = outcome.finished_at or now_ms()
    headers: dict[str, Any] = {names.HEADER_WORKER: worker, names.HEADER_ATTEMPT: attempt,
                               names.HEADER_FINISHED_AT: finished}
    if outcome.started_at is not None:
        headers[names.HEADER_STARTED_AT] = outcome.started_at
    if outcome.progress_events:
        headers[names.HEADER_PROGRESS_EVENTS] = outcome.progress_events
    return Basic.Properties(
        content_type=names.CONTENT_TYPE,
        correlation_id=request.correlation_id,
        message_id=request.correlation_id,
        message_type=request.type,
        headers=headers,
        # Job replies wait in a durable queue for a gateway: persist them. Sync replies go
        # straight to a live requester (direct reply-to): persisting them would only cost.
        delivery_mode=2 if durable else 1,
    )


async def reply_then_ack(channel: aiormq.Channel, *, body: bytes, reply_to: str,
                         properties: Basic.Properties, delivery_tag: int) -> None:
    """Queue the reply (default exchange, not mandatory) and then the ack, as one write."""
    if channel.publisher_confirms:
        raise ValueError("reply_then_ack needs a channel without publisher confirms")
    if channel.is_closed:
        raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
    # mandatory=False: direct reply-to returns a mandatory reply even while the requester
    # receives it.
    frames: list[Frame | ContentHeader | ContentBody] = [
        Basic.Publish(exchange="", routing_key=reply_to, mandatory=False),
        ContentHeader(properties=properties, body_size=len(body)),
        *body_frames(body, channel.max_content_size),
        Basic.Ack(delivery_tag=delivery_tag),
    ]
    await channel.write_queue.put(ChannelFrame.marshall(channel_number=channel.number,
                                                        frames=frames))


def body_frames(body: bytes, frame_size: int) -> list[ContentBody]:
    """The body cut to the broker's frame size (negotiated at connection)."""
    return [ContentBody(body[at:at + frame_size]) for at in range(0, len(body), frame_size)]
