"""What a sync call's publish answers when the broker nacks it (gateway.amqp.rpc.publish_request):
a unit of the decision, over a link that answers as scripted. The broker's side of each case is
shown end to end in tests/gateway/test_sync_calls.py (a full classic queue) and
tests/cluster/test_failover.py (a quorum queue changing leader)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.amqp.rpc import publish_request
from gateway.errors import NotConfirmed, Overloaded, Unavailable
from gateway.metrics import Metrics
from transport.confirms import Nack, PublishNacked
from transport.publishing import Confirmed


class ScriptedLink:
    """Answers each publish with the next verdict (None: acked; "silent": never answers, and
    the channel is replaced meanwhile when `replaced`); renews at once or never."""

    up = True

    def __init__(self, *verdicts: Nack | str | None, renews: bool | str = True,
                 replaced: bool = False) -> None:
        self.verdicts = list(verdicts)
        self.renews = renews
        self.replaced = replaced
        self.publishes = 0
        self.channel = object()
        self.confirming = self
        self.stalls: list[str] = []

    def is_current(self, channel: object) -> bool:
        return channel is self.channel

    async def stalled(self, target: str, why: str) -> Nack:
        self.stalls.append(target)
        return Nack.STALLED

    def route(self, method: str) -> tuple[str, str]:
        return "rpcfleet.requests", method

    def renew(self, why: str = "nacked") -> asyncio.Future[None] | None:
        if not self.renews:
            return None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.renews != "slowly":
            done.set_result(None)
        if self.renews is True:
            self.channel = object()  # a new channel; "gets none": the renewal failed
        return done

    async def publish(self, body: bytes, exchange: str, key: str, properties: Any, *,
                      confirm: bool, timeout: float | None, mandatory: bool = False) -> Confirmed:
        self.publishes += 1
        verdict = self.verdicts.pop(0)
        if verdict == "silent":
            if self.replaced:
                self.channel = object()  # another call's nack renewed it meanwhile
            await asyncio.Event().wait()
        if isinstance(verdict, Nack):
            raise PublishNacked(key, verdict)
        return Confirmed.ACKED


async def _publish(link: ScriptedLink, timeout: float = 2.0) -> None:
    await publish_request(link, Metrics(), "echo", b"{}", None, "c" * 32,  # type: ignore[arg-type]
                          timeout=timeout)


async def test_a_stalled_channel_is_renewed_and_the_call_goes_on_the_new_one() -> None:
    link = ScriptedLink(Nack.STALLED, None)
    await _publish(link)
    assert link.publishes == 2


async def test_nacked_again_on_the_new_channel_the_queue_is_full_overloaded() -> None:
    """A quorum queue at its limit nacks on every channel: not a leader changing
    (`unavailable`), a full queue (`overloaded`), as SPEC's error table says."""
    link = ScriptedLink(Nack.STALLED, Nack.STALLED)
    with pytest.raises(Overloaded):
        await _publish(link)
    assert link.publishes == 2


async def test_a_nack_after_confirms_is_overloaded_at_once() -> None:
    link = ScriptedLink(Nack.REFUSED)
    with pytest.raises(Overloaded):
        await _publish(link)
    assert link.publishes == 1


async def test_a_stalled_channel_that_cannot_be_renewed_now_is_unavailable() -> None:
    link = ScriptedLink(Nack.STALLED, renews=False)
    with pytest.raises(Unavailable):
        await _publish(link)


async def test_a_silence_counts_against_the_channel_only_if_it_is_still_current() -> None:
    """During a leader election many calls published on one channel time out one after the
    other; the first renews it. The later ones say nothing of the new channel, which must not
    be replaced in turn for them."""
    on_current = ScriptedLink("silent")
    with pytest.raises(NotConfirmed):
        await _publish(on_current, timeout=0.05)
    assert on_current.stalls == ["echo"]
    on_replaced = ScriptedLink("silent", replaced=True)
    with pytest.raises(NotConfirmed):
        await _publish(on_replaced, timeout=0.05)
    assert on_replaced.stalls == []


async def test_a_deadline_passing_before_the_retry_went_out_is_a_definite_refusal() -> None:
    """Nacked (nothing enqueued), then the publish timeout passes while the new channel is being
    opened: nothing was sent since, so the answer is `unavailable` without an id (a sync call
    with an id is never retried by the clients: its outcome would read as unknown)."""
    link = ScriptedLink(Nack.STALLED, renews="slowly")
    with pytest.raises(Unavailable) as refused:
        await _publish(link, timeout=0.05)
    assert link.publishes == 1
    assert getattr(refused.value, "call_id", None) is None


async def test_a_renewal_that_got_no_channel_is_unavailable_not_a_full_queue() -> None:
    """The renewal failed (the connection going, its set-up refused): no retry went out on a
    new channel, so nothing says the queue is full."""
    link = ScriptedLink(Nack.STALLED, renews="gets none")
    with pytest.raises(Unavailable):
        await _publish(link)
    assert link.publishes == 1
