"""Bad messages go to the dead-letter exchange with a reason; the consumer lives on."""

from __future__ import annotations

from protocol import ErrorCode, names
from protocol.clock import now_ms
from tests.support.amqp_client import amqp_client
from tests.support.fleet import StartWorker


def _reason(message: object) -> str:
    headers = getattr(message, "headers", None) or {}
    return str(headers.get(names.HEADER_DEAD_REASON))


async def test_malformed_messages_are_dead_lettered_with_a_reason_and_the_consumer_lives_on(
    amqp_url: str, start_worker: StartWorker
) -> None:
    start_worker()
    async with amqp_client(amqp_url) as client:
        not_json = await client.send("echo", body=b"{not json", reply_to=None)
        await client.send("echo", {"a": 1}, correlation_id=None, reply_to=None)
        queue = await client.channel.get_queue(names.pool_queue("basic"))
        await queue.bind(names.EXCHANGE, routing_key="ghost")
        await client.send("ghost", {}, reply_to=None)
        dead = await client.drain_queue(names.dead_queue("basic"), expect=3)
        events = await client.drain_queue(names.DEAD_EVENTS_QUEUE, expect=3)
        alive = await client.call("echo", {"still": "here"})
    reasons = sorted(_reason(m) for m in dead)
    assert reasons == ["malformed", "malformed", "malformed"]
    by_id = {m.correlation_id: m for m in dead}
    assert by_id[not_json].body == b"{not json"  # kept as it was, for inspection and replay
    assert len(events) == 3  # gateways get a copy to mark those jobs
    assert alive.reply.result == {"still": "here"}


async def test_a_request_whose_deadline_passed_while_queued_is_not_run(
    amqp_url: str, start_worker: StartWorker
) -> None:
    start_worker()
    async with amqp_client(amqp_url) as client:
        # Occupy the only consumer so the next request waits past its deadline in the queue.
        busy = await client.send("sleep", {"seconds": 1.5}, timeout=10)
        late = await client.send("whoami", {}, deadline_ms=now_ms() + 300,
                                 reply_to=names.REPLIES_QUEUE, persistent=True)
        assert (await client.answer(busy)).reply.ok
        dead = await client.drain_queue(names.dead_queue("basic"), expect=1)
        replies = await client.drain_queue(names.REPLIES_QUEUE, expect=1)
    assert dead[0].correlation_id == late
    assert _reason(dead[0]) == "expired"
    from protocol import replies as reply_codec

    expired = reply_codec.decode(replies[0].body)
    assert replies[0].correlation_id == late
    assert expired.error is not None and expired.error.code == ErrorCode.EXPIRED
