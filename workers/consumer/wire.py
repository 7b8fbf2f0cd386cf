"""A sync reply and the ack of its request, in one write on the request's own channel.

Why this is safe: the broker handles the frames of one channel in the order they arrive, so the
ack takes effect only after the reply has been routed. For a transient reply to direct reply-to,
that is all a publisher confirm would say (the broker confirms such a publish as soon as it has
routed it). Job replies are different: persistent, to a durable queue, and confirmed before the
ack (see `Dispatcher`).

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

import aiormq
from aiormq.abc import ChannelFrame
from pamqp.base import Frame
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.header import ContentHeader


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
