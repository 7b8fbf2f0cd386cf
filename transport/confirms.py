"""What a publisher nack means, and when a confirming channel must be replaced (SPEC 1.2:
`unavailable`).

A nack says the message was not enqueued: a queue full under `x-overflow: reject-publish`, or a
queue that cannot take it right now. RabbitMQ 3.10 adds a third case, measured here
(docs/reliability.md, "A node dies"): a channel whose *first* publish to a quorum queue comes
while the queue's record still names a leader on a node that has just died starts its queue
client on that dead leader and stays there: every publish of that channel to that queue is
nacked, for as long as the channel lives (40 s and more in the failover test), while a channel
opened a moment later is acked at once. A channel that was already publishing to the queue
follows the new leader by itself. (3.11.23 / 3.12.5 and later look the leader up in Ra's
leaderboard instead of the queue record.) When that leader is not dead but cut off (a node paused
by `pause_minority`, docs/reliability.md "Partitions"), the channel gets no nack either: its
publishes to the queue are never confirmed at all. Measured in the partition test: one gateway
process of two answered every call `503 overloaded` (2 s each, its publish timeout) for as long
as the load ran, while the other, on a channel opened after the move, answered at once.

So a nack, or a confirm that never comes, on a channel that has never had a publish to that
routing target confirmed is the signature of a queue that cannot take it *on this channel*: the
cure is a new channel, and the answer meanwhile is `unavailable` (`overloaded` after a timeout:
the broker may hold that one), not a full queue. A nack after confirms on the same channel is
the queue refusing (full): `overloaded`, and the channel is fine. `NackJudge` keeps that
knowledge for one confirming channel and paces its renewals (backing off while renewals do not
help, so a queue that is really full costs a channel open every few seconds, not a storm).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from enum import Enum

from aio_pika.abc import AbstractRobustChannel

log = logging.getLogger("rpcfleet.transport")

RENEW_FIRST_S = 0.2  # the quickest a renewal follows a nack (measured: 0.4 s from the kill)
RENEW_MAX_S = 2.0  # the slowest, while renewals keep meeting nacks (a full queue: one a 2 s)
TARGETS_REMEMBERED = 4096  # routing targets confirmed on one channel (method names, queues)


class Nack(Enum):
    REFUSED = "refused"  # the queue took this channel's publishes before: it is full
    STALLED = "stalled"  # never confirmed on this channel: the queue cannot take it here


@dataclass
class NackJudge:
    """For one confirming channel: which targets it had confirmed, and when to renew it."""

    quorum: bool = True  # only quorum queues stall a channel; a classic queue's nack is "full"
    _confirmed: set[str] = field(default_factory=set)
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
            self._pause = RENEW_FIRST_S  # renewals helped (or were never needed)

    def nacked(self, target: str) -> Nack:
        if not self.quorum or target in self._confirmed:
            return Nack.REFUSED
        return Nack.STALLED

    def renewal_due(self, now: float | None = None) -> bool:
        """True at most once per pause, the pause doubling up to RENEW_MAX_S until a target is
        confirmed again."""
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


def judged(judge: NackJudge, channel: AbstractRobustChannel) -> NackJudge:
    """`judge` kept for a robust `channel`: a reopened channel starts with nothing confirmed."""
    channel.reopen_callbacks.add(lambda *_: judge.opened())
    return judge


async def renew_if_stalled(judge: NackJudge, channel: AbstractRobustChannel,
                           target: str, *, unanswered: bool = False) -> Nack:
    """After a nack for `target` on a robust `channel` (the worker's confirming channel), or no
    confirm in time (`unanswered`): when
    it is the stalled kind and a renewal is due, close the AMQP channel under it, which aio-pika
    reopens at once as a new one (what was in flight on it fails and is tried again by its
    owner). Returns the verdict."""
    verdict = judge.nacked(target)
    if verdict is Nack.STALLED and judge.renewal_due():
        log.warning("the broker %s a publish to %s on a channel that never had one confirmed "
                    "(a quorum queue changing leader): reopening the channel",
                    "never confirmed" if unanswered else "nacked", target)
        raw = await channel.get_underlay_channel()
        await raw.close()
    return verdict
