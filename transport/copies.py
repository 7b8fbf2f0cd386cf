"""A message sent on again (a worker's retry or dead-letter copy, parked, replayed, put back):
its properties copied from the delivery, with what the new send changes. One copy for every
re-publish, so none forgets a property."""

from __future__ import annotations

from typing import Any, Protocol

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from pamqp.commands import Basic

from transport.publishing import Confirmed, publish_confirmed, underlay


class Delivered(Protocol):
    """A delivery's properties, as aio-pika's IncomingMessage and the worker's Delivery have
    them."""

    @property
    def content_type(self) -> str | None: ...
    @property
    def content_encoding(self) -> str | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def type(self) -> str | None: ...
    @property
    def reply_to(self) -> str | None: ...
    @property
    def priority(self) -> int | None: ...
    @property
    def app_id(self) -> str | None: ...
    @property
    def delivery_mode(self) -> Any: ...
    @property
    def headers(self) -> Any: ...


COPY_CONFIRM_S = 5.0  # the longest a copy waits for the broker's confirm


def copied_properties(message: Delivered, **changes: Any) -> Basic.Properties:
    """The delivery's properties as a publish takes them, `changes` applied (`headers=`,
    `expiration=`, `delivery_mode=`...). The expiration is not copied: a delivered message's
    TTL has run its course, and the new send says what it wants."""
    properties: dict[str, Any] = {
        "content_type": message.content_type, "content_encoding": message.content_encoding,
        "correlation_id": message.correlation_id, "message_id": message.message_id,
        "message_type": message.type, "reply_to": message.reply_to,
        "priority": message.priority, "app_id": message.app_id,
        "delivery_mode": int(message.delivery_mode) if message.delivery_mode else None,
        "headers": dict(message.headers or {}),
    }
    properties.update(changes)
    return Basic.Properties(**properties)


async def send_copy(channel: AbstractChannel, message: AbstractIncomingMessage, *,
                    exchange: str, routing_key: str, **changes: Any) -> Confirmed:
    """Send a held delivery on as a new message (`copied_properties` with `changes`), `mandatory`
    on the confirming `channel`, and say what the broker did, within COPY_CONFIRM_S (a broker
    blocked by an alarm, or a quorum queue whose leader is cut off, confirms nothing: the
    answer is then UNCONFIRMED, never a hang). The caller acks the original only once it is
    ACKED: a crash in between leaves two copies, never none."""
    return await publish_confirmed(
        await underlay(channel), message.body, exchange=exchange,
        routing_key=routing_key, properties=copied_properties(message, **changes),
        mandatory=True, timeout=COPY_CONFIRM_S)
