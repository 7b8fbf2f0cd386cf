"""What a publisher nack means, and when a confirming channel must be replaced (SPEC 1.2:
`unavailable`).

A nack says the message was not enqueued: a queue full under `x-overflow: reject-publish`, or a
queue that cannot take it right now. RabbitMQ 3.10 adds a third case, measured here
(docs/reliability.md, "A broker node dies"): a channel whose *first* publish to a quorum queue comes
while the queue's record still names a leader on a node that has just died starts its queue
client on that dead leader and stays there: every publish of that channel to that queue is
nacked, for as long as the channel lives (40 s and more in the failover test), while a channel
opened a moment later is acked at once. A channel that was already publishing to the queue
follows the new leader by itself. (3.11.23 / 3.12.5 and later look the leader up in Ra's
leaderboard instead of the queue record.) When that leader is not dead but cut off (a node
paused by `pause_minority`, docs/reliability.md "A network partition"), the channel gets no nack
either: its publishes to the queue are never confirmed at all. Measured in the partition test:
one gateway process of two answered every call `503 overloaded` (2 s each, its publish timeout)
for as long as the load ran, while the other, on a channel opened after the move, answered at once.

So a nack, or a confirm that never comes, on a channel that has never had a publish to that
routing target confirmed is the signature of a queue that cannot take it *on this channel*: the
cure is a new channel, and the answer meanwhile is `unavailable` (`overloaded` after a timeout:
the broker may hold that one), not a full queue. A nack after confirms on the same channel is
the queue refusing (full): `overloaded`, and the channel is fine. `NackJudge` keeps that
knowledge for one confirming channel and paces its renewals (backing off while renewals do not
help, so a queue that is really full costs a channel open every few seconds, not a storm).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from transport import background
from transport.background import Background
from transport.publishing import Confirmed, publish_confirmed, underlay
from transport.waiting import poll

log = logging.getLogger("rpcfleet.transport")

RENEW_FIRST_S = 0.2  # the quickest a renewal follows a nack (measured: 0.4 s from the kill)
RENEW_MAX_S = 2.0  # the slowest, while renewals keep meeting nacks (a full queue: one a 2 s)
TARGETS_REMEMBERED = 4096  # routing targets confirmed on one channel (method names, queues)
RETIRE_CLOSE_S = 10.0  # the longest a replaced channel's close waits for the broker's answer
# The longest a renewal waits for its new channel: a connection blocked by an alarm opens none
# until unblocked, and one that dies blocked never is (aiormq waits for the unblock): a renewal
# that never ends would bar every renewal after it, for the life of the process.
RENEW_TIMEOUT_S = 10.0
RETIRE_POLL_S = 0.1  # how often a replaced channel is asked whether it still owes confirms
OnChannel = Callable[[AbstractRobustChannel], Awaitable[None]]


class Nack(Enum):
    REFUSED = "refused"  # the queue took this channel's publishes before: it is full
    STALLED = "stalled"  # never confirmed on this channel: the queue cannot take it here


@dataclass
class NackJudge:
    """For one confirming channel: which targets it had confirmed, and when to renew it."""

    quorum: bool = True  # only quorum queues stall a channel; a classic queue's nack is "full"
    _confirmed: set[str] = field(default_factory=set)
    _stalled: set[str] = field(default_factory=set)  # judged stalled, not confirmed since
    _pause: float = RENEW_FIRST_S
    _next_renewal: float = 0.0

    def opened(self) -> None:
        """A new (or reopened) channel: nothing confirmed on it yet."""
        self._confirmed.clear()

    def confirmed(self, target: str) -> None:
        if target not in self._confirmed:
            if len(self._confirmed) >= TARGETS_REMEMBERED:
                self._confirmed.clear()
            self._confirmed.add(target)
        if target in self._stalled:  # a renewal helped: the next stall is answered quickly
            self._stalled.discard(target)
            self._pause = RENEW_FIRST_S

    def nacked(self, target: str) -> Nack:
        if not self.quorum or target in self._confirmed:
            return Nack.REFUSED
        if len(self._stalled) >= TARGETS_REMEMBERED:
            self._stalled.clear()
        self._stalled.add(target)
        return Nack.STALLED

    def renewal_due(self, now: float | None = None) -> bool:
        """True at most once per pause, the pause doubling up to RENEW_MAX_S until a target
        judged stalled is confirmed (other targets' first confirms on a new channel say nothing
        of it: a queue that stays full keeps the pause long)."""
        now = time.monotonic() if now is None else now
        if now < self._next_renewal:
            return False
        self._next_renewal = now + self._pause
        self._pause = min(self._pause * 2, RENEW_MAX_S)
        return True


class PublishNacked(Exception):
    """The broker nacked a publish (nothing was enqueued), judged by `NackJudge`."""

    def __init__(self, target: str, verdict: Nack, *, replaced: bool = False) -> None:
        super().__init__(f"the broker refused a message for {target!r} ({verdict.value})")
        self.target = target
        self.verdict = verdict
        self.replaced = replaced  # nacked on a channel renewed since: try the new one


@dataclass(frozen=True)
class Published:
    """What the broker did with one publish, and whether it came on the channel that is still
    current (else it says nothing of the current one, and the judge did not count it)."""

    confirmed: Confirmed
    current: bool


class ConfirmingChannel:
    """A connection's confirming channel, *replaced* by a new one when the judge finds it
    stalled: the gateway's and the worker's alike.

    Replaced, never closed and left to aio-pika to reopen: a Channel.Close the broker does not
    answer (a node cut off, or one reading nothing under a memory alarm) leaves a robust channel
    closed for good, and every publish after fails (tests/faults/test_unconfirmed_replies.py). A new
    channel is opened beside it; the old one is closed in the background once what waits on it
    is `drained` (the gateway's direct replies) and the confirms it still owes have come, or
    after `retire_after` seconds. Whoever publishes reads `current` for each publish and counts
    a confirm, a nack or a silence for the judge only if it came on the channel that is still
    current (`publish` says which)."""

    def __init__(self, judge: NackJudge, *, retire_after: float,
                 renew_timeout: float = RENEW_TIMEOUT_S) -> None:
        self.judge = judge
        self.retire_after = retire_after
        self.renew_timeout = renew_timeout
        self.connection: AbstractRobustConnection | None = None
        self.current: AbstractRobustChannel | None = None
        self._setups: list[OnChannel] = []
        self._drained: list[OnChannel] = []
        self._lost: list[Callable[[], None]] = []
        self._renewal: asyncio.Task[None] | None = None
        self._background = Background()  # channels being retired
        self._closing = False

    def attach(self, connection: AbstractRobustConnection,
               channel: AbstractRobustChannel) -> None:
        """The first channel of `connection` (aio-pika reopens it with the connection)."""
        self.connection = connection
        self._watch(channel)

    def when_new(self, setup: OnChannel, drained: OnChannel) -> None:
        """`setup` runs on each new channel before it is used; a replaced one stays open until
        `drained` returns."""
        self._setups.append(setup)
        self._drained.append(drained)

    def when_lost(self, callback: Callable[[], None]) -> None:
        """The current channel closed (not one being retired)."""
        self._lost.append(callback)

    def renew(self, why: str = "nacked") -> asyncio.Task[None] | None:
        """Replace the channel at the judge's pace; `why`: what the broker did to publishes
        there ("nacked", "never confirmed"). Returns the renewal under way, if any, for a
        publish to wait on before trying again."""
        if self._renewal is not None and not self._renewal.done():
            return self._renewal
        if (self._closing or self.connection is None or self.connection.is_closed
                or not self.judge.renewal_due()):
            return None
        self._renewal = asyncio.ensure_future(self._renew(self.connection, why))
        return self._renewal

    async def stalled(self, target: str, why: str, wait: float = 0.0) -> Nack:
        """A publish to `target` was nacked or never confirmed (`why`): the judge's verdict, the
        channel's renewal started when stalled (and waited for up to `wait` s)."""
        verdict = self.judge.nacked(target)
        if verdict is Nack.STALLED and (renewal := self.renew(why)) is not None and wait > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await asyncio.shield(renewal)
        return verdict

    async def publish(self, body: bytes, *, routing_key: str, properties: Any, target: str,
                      exchange: str = "", mandatory: bool = False,
                      timeout: float | None = None) -> Published:
        """The one publish on the confirming channel, the gateway's and the worker's: on the
        channel current now, waiting for the broker's answer (UNCONFIRMED past `timeout`). An
        ack on a channel still current counts `target` confirmed for the judge; what follows a
        nack or a silence is the caller's (`stalled`, a retry). A missing or closed channel
        raises ChannelInvalidStateError at once (`underlay`); one closing under the publish
        raises as `publish_confirmed` says."""
        channel = self.current
        raw = await underlay(channel)
        confirmed = await publish_confirmed(raw, body, exchange=exchange, routing_key=routing_key,
                                            properties=properties, mandatory=mandatory,
                                            timeout=timeout)
        current = self.is_current(channel)
        if confirmed is Confirmed.ACKED and current:
            self.judge.confirmed(target)
        return Published(confirmed, current)

    def is_current(self, channel: AbstractRobustChannel | None) -> bool:
        """`channel` was not replaced since it was read from `current`."""
        return channel is self.current

    async def close(self) -> None:
        self._closing = True  # no renewal starts from here on
        await background.stop(self._renewal)
        await self._background.stop()

    async def _renew(self, connection: AbstractRobustConnection, why: str) -> None:
        old = self.current
        channel: AbstractRobustChannel | None = None
        try:
            async with asyncio.timeout(self.renew_timeout):
                channel = await connection.channel(publisher_confirms=True)
                for setup in self._setups:
                    await setup(channel)
        except Exception as exc:  # the connection is going: its reconnect brings a channel
            log.warning("could not open a new confirming channel: %r", exc)
            if channel is not None:
                self._background.start(self._retire(channel))
            return
        self._watch(channel)
        log.warning("the broker %s publishes on a channel that never had them confirmed "
                    "(a quorum queue changing leader): publishing on a new channel", why)
        if old is not None:
            self._background.start(self._retire(old))

    async def _retire(self, channel: AbstractRobustChannel) -> None:
        async def nothing_owed() -> bool:  # no publish still waits for the broker's answer
            raw = await channel.get_underlay_channel()
            return not getattr(raw, "confirmations", None)

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.retire_after):
                for drained in self._drained:
                    await drained(channel)
                await poll(nothing_owed, self.retire_after, RETIRE_POLL_S)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(RETIRE_CLOSE_S):  # a broker that does not answer
                await channel.close()

    def _watch(self, channel: AbstractRobustChannel) -> None:
        channel.close_callbacks.add(lambda *_: self._closed(channel))
        channel.reopen_callbacks.add(lambda *_: self._reopened(channel))
        self.judge.opened()
        self.current = channel

    def _closed(self, channel: AbstractRobustChannel) -> None:
        if channel is self.current:
            for callback in self._lost:
                callback()

    def _reopened(self, channel: AbstractRobustChannel) -> None:
        if channel is self.current:  # with its connection: a new channel, nothing confirmed
            self.judge.opened()
