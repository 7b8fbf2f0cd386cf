"""A publish with confirms, and what the broker did with it: the one reading of a publisher
confirm, on a raw (aiormq) confirming channel. `transport.confirms.ConfirmingChannel.publish`
adds the nack judge around it for the gateway's calls and jobs and the worker's replies and
copies; `transport.copies.send_copy` uses it alone (dead-letter replay and put-back, a retiring
pool's requests).

aiormq holds the channel's lock until its writer has written a publish's frames (`wait`): kept.
Without it a publish would not wait for the socket, and nothing would bound what a blocked
broker (a memory alarm) leaves queued in the process's socket buffer; with it, one publish per
channel waits there and the rest time out unsent (measured: -3 % of the gateway's CPU a call
without it, `docs/performance.md`)."""

from __future__ import annotations

from enum import Enum
from typing import Any

import aiormq
from aio_pika.abc import AbstractChannel
from pamqp.commands import Basic


class Confirmed(Enum):
    ACKED = "acked"  # a queue has it
    RETURNED = "returned"  # sent `mandatory` and no queue is bound for it
    NACKED = "nacked"  # a queue would not take it: full, or unable right now (a new leader)
    UNCONFIRMED = "unconfirmed"  # no answer within the timeout: the broker may yet hold it


async def underlay(channel: AbstractChannel | None) -> aiormq.abc.AbstractChannel:
    """The AMQP channel under `channel`, to publish on straight (no aio-pika Message or
    Exchange objects on the hot paths). A missing or closed one raises ChannelInvalidStateError
    at once: its raw channel would wait for a writer that is gone."""
    if channel is None or channel.is_closed:
        raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
    return await channel.get_underlay_channel()


async def publish_confirmed(channel: aiormq.abc.AbstractChannel, body: bytes, *,
                            routing_key: str, properties: Any, exchange: str = "",
                            mandatory: bool, timeout: float | None = None) -> Confirmed:
    """Publish on the confirming `channel` and say what the broker did. A channel that closes
    under the publish raises (aiormq's errors, ConnectionError): the caller tries again on the
    channel as it is then, or gives up."""
    try:
        confirm = await channel.basic_publish(body, exchange=exchange, routing_key=routing_key,
                                              properties=properties, mandatory=mandatory,
                                              timeout=timeout)
    except aiormq.exceptions.PublishError:  # a return, on a channel that raises for them
        return Confirmed.RETURNED
    except aiormq.exceptions.DeliveryError:
        return Confirmed.NACKED
    except TimeoutError:
        return Confirmed.UNCONFIRMED
    # A return comes back as the returned message on a channel that does not raise for them.
    return Confirmed.ACKED if isinstance(confirm, Basic.Ack) else Confirmed.RETURNED
