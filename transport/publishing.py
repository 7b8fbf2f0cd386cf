"""A publish with confirms, and what the broker did with it: the one reading of a publisher
confirm for the acts both sides perform on a raw (aiormq) confirming channel: a worker's reply
to a job, and a held message sent on as a copy (dead-letter replay and put-back, a retiring
pool's requests). The gateway's own publishes go through its broker link (`gateway.amqp.link`),
which adds the channel lock and the nack judge around the same reading."""

from __future__ import annotations

from enum import Enum
from typing import Any

import aiormq
from aio_pika.abc import AbstractRobustChannel
from pamqp.commands import Basic


class Confirmed(Enum):
    ACKED = "acked"  # a queue has it
    RETURNED = "returned"  # sent `mandatory` and no queue is bound for it
    NACKED = "nacked"  # a queue would not take it: full, or unable right now (a new leader)
    UNCONFIRMED = "unconfirmed"  # no answer within the timeout: the broker may yet hold it


async def underlay(channel: AbstractRobustChannel | None) -> aiormq.abc.AbstractChannel:
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
