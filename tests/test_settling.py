"""transport.settling: every delivery rpcfleet consumes is settled once, by a decision; a closed
channel settles by itself (the broker hands its deliveries back); a hand-back waits first."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import aiormq

from transport.settling import Decision, settle


@dataclass
class FakeChannel:
    is_closed: bool = False


@dataclass
class FakeDelivery:
    """A unit's stand-in with the surface of aio-pika's IncomingMessage: the broker's behaviour
    under these calls is tested with real deliveries (tests/jobs, tests/workers)."""

    open_channel: FakeChannel = field(default_factory=FakeChannel)
    processed: bool = False
    calls: list[str] = field(default_factory=list)
    raising: bool = False

    @property
    def channel(self) -> FakeChannel:
        if self.open_channel.is_closed:  # as aio-pika does
            raise aiormq.exceptions.ChannelInvalidStateError
        return self.open_channel

    async def ack(self) -> None:
        if self.raising:
            raise aiormq.exceptions.ChannelInvalidStateError("closed under the ack")
        self.calls.append("ack")
        self.processed = True

    async def reject(self, requeue: bool = False) -> None:
        self.calls.append(f"reject(requeue={requeue})")
        self.processed = True


async def test_a_delivery_is_acked_once() -> None:
    delivery = FakeDelivery()
    assert await settle(delivery, Decision.ACK)
    assert not await settle(delivery, Decision.ACK)
    assert not await settle(delivery, Decision.REQUEUE)
    assert delivery.calls == ["ack"]


async def test_a_requeue_is_a_reject_with_requeue_after_its_pause() -> None:
    delivery = FakeDelivery()
    started = time.monotonic()
    assert await settle(delivery, Decision.REQUEUE, pause=0.05)
    assert time.monotonic() - started >= 0.05
    assert delivery.calls == ["reject(requeue=True)"]


async def test_nothing_is_written_on_a_closed_channel() -> None:
    delivery = FakeDelivery(FakeChannel(is_closed=True))
    assert not await settle(delivery, Decision.ACK)
    assert delivery.calls == []


async def test_a_channel_closing_under_the_ack_is_not_an_error() -> None:
    delivery = FakeDelivery(raising=True)
    assert not await settle(delivery, Decision.ACK)
