"""A consumer answers requests by correlation id, exactly as the contract says."""

from __future__ import annotations

import pytest
from pamqp.commands import Basic

from protocol import ErrorCode, names
from tests.support.amqp_client import amqp_client
from tests.support.fleet import StartWorker
from tests.support.rabbit import Vhost
from tests.support.waiting import async_wait_for
from workers.consumer.outgoing import body_frames, reply_then_ack


async def test_a_request_is_answered_with_its_result_and_the_worker_id(
    amqp_url: str, start_worker: StartWorker
) -> None:
    start_worker()
    async with amqp_client(amqp_url) as client:
        answer = await client.call("echo", {"text": "hi", "n": [1, 2]})
    assert answer.reply.ok and answer.reply.result == {"text": "hi", "n": [1, 2]}
    assert answer.worker is not None and answer.worker.endswith(":basic:0")
    assert answer.attempt == 1


async def test_params_are_validated_into_the_handlers_model(
    amqp_url: str, start_worker: StartWorker
) -> None:
    start_worker()
    async with amqp_client(amqp_url) as client:
        good = await client.call("greet", {"name": "ada", "times": 2})
        bad = await client.call("greet", {"times": "many"})
        not_object = await client.call("greet", [1, 2])
    assert good.reply.result == "hello ada hello ada"
    assert bad.reply.error is not None and bad.reply.error.code == ErrorCode.INVALID_PARAMS
    assert "name" in bad.reply.error.message and "times" in bad.reply.error.message
    assert not_object.reply.error is not None
    assert not_object.reply.error.code == ErrorCode.INVALID_PARAMS


async def test_a_handler_error_is_a_worker_error_with_its_message_never_a_traceback(
    amqp_url: str, start_worker: StartWorker
) -> None:
    start_worker()
    async with amqp_client(amqp_url) as client:
        failed = await client.call("boom", {"why": "disk on fire"})
        after = await client.call("echo", {"still": "alive"})
    assert failed.reply.error is not None
    assert failed.reply.error.code == ErrorCode.WORKER_ERROR
    assert failed.reply.error.message == "RuntimeError: boom: disk on fire"
    assert "Traceback" not in failed.reply.error.message
    assert after.reply.result == {"still": "alive"}


async def test_results_that_are_not_json_or_too_large_are_refused_clearly(
    amqp_url: str, start_worker: StartWorker
) -> None:
    start_worker(max_result_bytes=1000)
    async with amqp_client(amqp_url) as client:
        odd = await client.call("unserialisable", {})
        huge = await client.call("big", {"size": 5000})
        fits = await client.call("big", {"size": 10})
    assert odd.reply.error is not None and odd.reply.error.code == ErrorCode.WORKER_ERROR
    assert "JSON" in odd.reply.error.message
    assert huge.reply.error is not None
    assert huge.reply.error.code == ErrorCode.RESULT_TOO_LARGE
    assert fits.reply.result == "x" * 10


async def test_an_unknown_method_with_a_reply_to_gets_unknown_method(
    amqp_url: str, start_worker: StartWorker
) -> None:
    start_worker()
    async with amqp_client(amqp_url) as client:
        # Routed to the pool's queue by a stray binding: the worker does not know the method.
        queue = await client.channel.get_queue("rpcfleet.pool.basic")
        await queue.bind("rpcfleet", routing_key="nope")
        answer = await client.call("nope", {})
    assert answer.reply.error is not None
    assert answer.reply.error.code == ErrorCode.UNKNOWN_METHOD


async def test_a_reply_larger_than_one_frame_arrives_whole_and_its_request_is_acked(
    vhost: Vhost, start_worker: StartWorker
) -> None:
    start_worker()
    size = 3 * 131072 + 17  # over three frames of the broker's default frame_max
    async with amqp_client(vhost.amqp_url) as client:
        answers = [await client.call("big", {"size": n}) for n in (size, 0, 10)]
    assert [a.reply.result for a in answers] == ["x" * size, "", "x" * 10]
    # Each reply went out with the ack of its request behind it: nothing stays unacked.
    await async_wait_for(lambda: vhost.queue_counts(names.pool_queue("basic")) == (0, 0, 1),
                         what="every request acked")


async def test_reply_then_ack_refuses_a_confirming_channel(vhost: Vhost) -> None:
    async with amqp_client(vhost.amqp_url) as client:  # its channel confirms publishes
        raw = await client.channel.get_underlay_channel()
        with pytest.raises(ValueError, match="without publisher confirms"):
            await reply_then_ack(raw, body=b"{}", reply_to="amq.rabbitmq.reply-to.x",
                                 properties=Basic.Properties(), delivery_tag=1)


def test_a_body_is_cut_to_the_frame_size_and_an_empty_one_sends_no_frame() -> None:
    body = bytes(range(256)) * 10
    frames = body_frames(body, 1000)
    assert [len(f.value) for f in frames] == [1000, 1000, 560]
    assert b"".join(f.value for f in frames) == body
    assert body_frames(b"", 1000) == []
    assert len(body_frames(b"x" * 1000, 1000)) == 1
