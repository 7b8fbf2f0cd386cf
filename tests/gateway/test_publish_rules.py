"""What a sync call's publish answers when the broker nacks it (gateway.amqp.rpc.publish_request):
a unit of the decision, over a link that answers as scripted. The broker's side of each case is
shown end to end in tests/gateway/test_sync_calls.py (a full classic queue) and
tests/cluster/test_failover.py (a quorum queue changing leader)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.amqp.rpc import publish_request
from gateway.errors import Overloaded, Unavailable
from gateway.metrics import Metrics
from transport.confirms import Nack, PublishNacked
from transport.publishing import Confirmed


class ScriptedLink:
    """Answers each publish with the next verdict (None: acked); renews at once or never."""

    channel = object()
    up = True

    def __init__(self, *verdicts: Nack | None, renews: bool = True) -> None:
        self.verdicts = list(verdicts)
        self.renews = renews
        self.publishes = 0

    def route(self, method: str) -> tuple[str, str]:
        return "rpcfleet.requests", method

    def renew(self, why: str = "nacked") -> asyncio.Future[None] | None:
        if not self.renews:
            return None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def publish(self, body: bytes, exchange: str, key: str, properties: Any, *,
                      confirm: bool, timeout: float | None, mandatory: bool = False) -> Confirmed:
        self.publishes += 1
        verdict = self.verdicts.pop(0)
        if verdict is not None:
            raise PublishNacked(key, verdict)
        return Confirmed.ACKED


async def _publish(link: ScriptedLink) -> None:
    await publish_request(link, Metrics(), "echo", b"{}", None, "c" * 32,  # type: ignore[arg-type]
                          timeout=2.0)


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
