"""A stalled confirming channel is replaced, not reopened (transport.confirms.ConfirmingChannel),
on a real broker: the new channel is current and starts with nothing confirmed, the old one is
closed without being taken for a lost channel, and nothing is renewed once closing; its one
publish counts for the judge what the broker acked on the current channel."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import aiormq
import pytest

from tests.support.waiting import async_wait_for
from transport.confirms import ConfirmingChannel, Nack, NackJudge, Published
from transport.publishing import Confirmed


@pytest.fixture
async def confirming(amqp_url: str) -> AsyncIterator[ConfirmingChannel]:
    """A confirming channel (judged for quorum queues) on a connection of its own."""
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        confirming = ConfirmingChannel(NackJudge(quorum=True), retire_after=2.0)
        confirming.attach(connection, await connection.channel(publisher_confirms=True))
        yield confirming
    finally:
        await connection.close()


async def test_a_renewal_replaces_the_channel_and_retires_the_old_one_quietly(
    confirming: ConfirmingChannel,
) -> None:
    first = confirming.current
    assert first is not None
    lost: list[str] = []
    confirming.when_lost(lambda: lost.append("lost"))
    set_up: list[object] = []

    async def setup(channel: object) -> None:
        set_up.append(channel)

    async def drained(channel: object) -> None:
        """Nothing waits on a replaced channel here."""

    confirming.when_new(setup, drained)
    confirming.judge.confirmed("rpcfleet.replies.x")
    assert confirming.is_current(first)

    renewal = confirming.renew("never confirmed")
    assert renewal is not None
    await renewal
    new = confirming.current
    assert new is not None and new is not first and not new.is_closed
    assert set_up == [new] and not confirming.is_current(first)
    # The new channel has had nothing confirmed: a nack there is the stalled kind.
    assert confirming.judge.nacked("rpcfleet.replies.x") is Nack.STALLED
    await async_wait_for(lambda: first.is_closed, what="the replaced channel to close")
    assert lost == []  # retiring a replaced channel is not losing the current one

    await confirming.close()
    assert confirming.renew("nacked") is None  # closing: no renewal starts


async def test_a_publish_acked_on_the_current_channel_counts_its_target_for_the_judge(
    confirming: ConfirmingChannel,
) -> None:
    channel = confirming.current
    assert channel is not None
    queue = await channel.declare_queue("", exclusive=True)
    assert confirming.judge.nacked(queue.name) is Nack.STALLED  # nothing confirmed yet

    published = await confirming.publish(b"{}", routing_key=queue.name, target=queue.name,
                                         properties=None, mandatory=True, timeout=5)
    assert published == Published(Confirmed.ACKED, current=True)
    assert confirming.judge.nacked(queue.name) is Nack.REFUSED  # confirmed here before
    message = await queue.get(timeout=5)
    assert message.body == b"{}"
    await message.ack()

    returned = await confirming.publish(b"{}", routing_key="rpcfleet.nobody", target="x",
                                        properties=None, mandatory=True, timeout=5)
    assert returned.confirmed is Confirmed.RETURNED
    assert confirming.judge.nacked("x") is Nack.STALLED  # a return counts for nothing

    await channel.close()
    with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):
        await confirming.publish(b"{}", routing_key=queue.name, target=queue.name,
                                 properties=None, timeout=5)
    await confirming.close()
