"""One delivery as the dispatcher sees it: a thin, lazy view over aiormq's DeliveredMessage, and
`InFlight`, the count of deliveries a consumer holds unacked.

The hot path skips aio-pika's IncomingMessage (which copies every property up front) and its
extra task per delivery; acks go to the very channel the delivery came on.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import aiormq
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic


class AlreadySettled(RuntimeError):
    """A second ack or reject of one delivery: the broker would close the channel for it."""


class Delivery:
    __slots__ = ("_props", "body", "channel", "delivery_tag", "last", "redelivered", "settled")

    def __init__(self, raw: DeliveredMessage) -> None:
        assert isinstance(raw.delivery, Basic.Deliver)
        self._props = raw.header.properties
        self.body: bytes = raw.body
        self.channel = cast(aiormq.Channel, raw.channel)  # the concrete one: publish(wait=)
        self.delivery_tag: int = raw.delivery.delivery_tag or 0
        self.redelivered = bool(raw.delivery.redelivered)
        self.settled = False
        self.last = False  # the last this consumer takes before it leaves (a recycle)

    @property
    def correlation_id(self) -> str | None:
        return self._props.correlation_id

    @property
    def message_id(self) -> str | None:
        return self._props.message_id

    @property
    def type(self) -> str | None:
        return self._props.message_type

    @property
    def reply_to(self) -> str | None:
        return self._props.reply_to

    @property
    def headers(self) -> dict[str, Any]:
        return self._props.headers or {}

    @property
    def expiration(self) -> str | None:
        return self._props.expiration

    @property
    def priority(self) -> int | None:
        return self._props.priority

    @property
    def delivery_mode(self) -> int | None:
        return self._props.delivery_mode

    @property
    def content_type(self) -> str | None:
        return self._props.content_type

    @property
    def content_encoding(self) -> str | None:
        return self._props.content_encoding

    @property
    def app_id(self) -> str | None:
        return self._props.app_id

    @property
    def processed(self) -> bool:
        """Acked or rejected (aio-pika's name, for `transport.settling`)."""
        return self.settled

    def settling(self) -> None:
        """Claim the one settlement of this delivery; a second claim raises."""
        if self.settled:
            raise AlreadySettled(f"delivery {self.delivery_tag} ({self.correlation_id}) was "
                                 "already acked or rejected")
        self.settled = True

    async def ack(self) -> None:
        self.settling()
        # Queued behind every frame sent before it on this channel; nothing to wait for.
        await self.channel.basic_ack(self.delivery_tag, wait=False)

    async def reject(self, requeue: bool = False) -> None:
        self.settling()
        await self.channel.basic_reject(self.delivery_tag, requeue=requeue)


class InFlight:
    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count <= 0:
            self.count = 0
            self._idle.set()

    async def idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is held; False if `timeout` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True
