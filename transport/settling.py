"""Settling a delivery: once, by a decision, the same way on both sides.

Every consumer of rpcfleet settles what it is delivered here: the worker's requests (after their
reply or copies are confirmed), the gateway's outcomes (once stored, or parked), dead letters
(after a replay or a put-back's copy is confirmed), a retiring pool's requests. Three rules:

- **Once.** A delivery already settled is left alone (a second ack closes the channel with
  PRECONDITION_FAILED, taking every other delivery of the channel with it).
- **A closed channel settles by itself.** The broker hands back what a closed channel held; an
  ack or reject written there would fail, and is not tried: `settle` says False.
- **A hand-back waits first** (`pause`): a delivery handed back because what should replace it
  was refused (a store down, a broker refusing copies) would otherwise come straight back and
  spin.
"""

from __future__ import annotations

import asyncio
import contextlib
from enum import Enum
from typing import Protocol

import aiormq

# What a settlement meets when the channel closes under it: the broker hands the delivery back.
_CLOSED_UNDER_IT = (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError,
                    ConnectionError)


class Decision(Enum):
    ACK = "ack"  # done with: its outcome is recorded or its replacement confirmed
    REQUEUE = "requeue"  # back to its queue, to be delivered again (a quorum queue counts it)


class _Channel(Protocol):
    @property
    def is_closed(self) -> bool: ...


class Settleable(Protocol):
    """A delivery as aio-pika's IncomingMessage and the worker's `Delivery` both are."""

    @property
    def processed(self) -> bool: ...

    @property
    def channel(self) -> _Channel: ...

    async def ack(self) -> None: ...

    async def reject(self, requeue: bool = False) -> None: ...


async def settle(message: Settleable, decision: Decision, *, pause: float = 0.0) -> bool:
    """Settle `message` by `decision`; True when this call did it. False when it was settled
    already or its channel is closed (the broker hands it back), or the channel closed under
    the settlement."""
    if message.processed or _closed(message):
        return False
    if decision is Decision.REQUEUE and pause > 0:
        await asyncio.sleep(pause)
        if message.processed or _closed(message):  # the channel went meanwhile
            return False
    with contextlib.suppress(*_CLOSED_UNDER_IT):
        if decision is Decision.ACK:
            await message.ack()
        else:
            await message.reject(requeue=True)
        return True
    return False


def _closed(message: Settleable) -> bool:
    try:
        return message.channel.is_closed
    except aiormq.exceptions.ChannelInvalidStateError:  # aio-pika's way of saying closed
        return True
