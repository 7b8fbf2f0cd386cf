"""Every delivery is settled exactly once, whatever its handler does (SPEC: worker semantics)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from protocol import ErrorCode, names, replies
from tests.support.amqp_client import amqp_client
from tests.support.fleet import StartWorker
from tests.support.processes import consumer_count
from tests.support.rabbit import Vhost
from tests.support.waiting import async_wait_for, wait_for


def _reason(message: object) -> str:
    headers = getattr(message, "headers", None) or {}
    return str(headers.get(names.HEADER_DEAD_REASON))


async def test_a_request_that_kills_its_consumer_every_time_ends_max_attempts_once(
    amqp_url: str, start_worker: StartWorker
) -> None:
    worker = start_worker(processes=1, max_attempts=3)
    async with amqp_client(amqp_url) as client:
        poison = await client.send("die", {}, reply_to=names.REPLIES_QUEUE, persistent=True,
                                   timeout=60)
        [reply] = await client.drain_queue(names.REPLIES_QUEUE, expect=1, timeout=45)
        [dead] = await client.drain_queue(names.dead_queue("basic"), expect=1)
        # The fleet keeps serving, on the consumer that settled the poison request.
        alive = await client.call("whoami", {}, timeout=10)
        assert alive.reply.ok
        events = await client.drain_queue(names.DEAD_EVENTS_QUEUE, expect=1)
    answer = replies.decode(reply.body)
    assert reply.correlation_id == poison
    assert answer.error is not None and answer.error.code == ErrorCode.MAX_ATTEMPTS
    assert reply.headers[names.HEADER_ATTEMPT] == 4
    assert dead.correlation_id == poison and _reason(dead) == "max_attempts"
    assert len(events) == 1
    # Settled once: no double ack closed the channel of the consumer that gave up on it.
    assert "PRECONDITION_FAILED" not in worker.output()
    assert consumer_count(amqp_url, names.pool_queue("basic")) == 1
    assert alive.reply.result["pid"] != os.getpid()


async def test_handlers_that_raise_systemexit_keyboardinterrupt_or_cancellederror_fail_alone(
    amqp_url: str, start_worker: StartWorker
) -> None:
    worker = start_worker(processes=1)
    async with amqp_client(amqp_url) as client:
        before = await client.call("whoami", {})
        answers = {method: await client.call(method, {}, timeout=10)
                   for method in ("exits", "interrupts", "self_cancel", "cancels_own_run")}
        after = await client.call("whoami", {})
    for method, answer in answers.items():
        assert answer.reply.error is not None, method
        assert answer.reply.error.code == ErrorCode.WORKER_ERROR, (method, answer.reply)
        assert answer.attempt == 1
    assert "SystemExit" in str(answers["exits"].reply.error)
    assert "KeyboardInterrupt" in str(answers["interrupts"].reply.error)
    assert "CancelledError" in str(answers["self_cancel"].reply.error)
    assert "cancelled its own run" in str(answers["cancels_own_run"].reply.error)
    # The same process answered before and after: the consumer lived through all three.
    assert before.reply.result["pid"] == after.reply.result["pid"]
    assert worker.alive()
    await async_wait_for(lambda: consumer_count(amqp_url, names.pool_queue("basic")) == 1,
                         what="the consumer to stay subscribed")


async def test_a_time_limit_hands_back_the_deliveries_its_consumer_held_without_an_attempt(
    amqp_url: str, start_worker: StartWorker
) -> None:
    start_worker("tests.pools.limits:pool", pool="limits", processes=1, prefetch=3)
    async with amqp_client(amqp_url) as client:
        slow = await client.send("slow", {"seconds": 30}, timeout=30)
        held = [await client.send("quick", {}, timeout=30) for _ in range(2)]
        limited = await client.answer(slow, timeout=20)
        answers = [await client.answer(job_id, timeout=20) for job_id in held]
    assert limited.reply.error is not None and limited.reply.error.code == ErrorCode.TIME_LIMIT
    for answer in answers:
        assert answer.reply.ok
        assert answer.attempt == 1  # handed back as they were: no attempt counted


async def test_a_time_limit_lets_the_other_running_handler_finish_once(
    amqp_url: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    start_worker("tests.pools.limits:pool", pool="limits", processes=1, prefetch=2,
                 concurrency=2)
    marker = tmp_path / "naps"
    async with amqp_client(amqp_url) as client:
        slow = await client.send("slow", {"seconds": 30}, timeout=30)
        nap = await client.send("nap", {"seconds": 2.5, "marker": str(marker)}, timeout=30)
        limited = await client.answer(slow, timeout=20)
        napped = await client.answer(nap, timeout=20)
    assert limited.reply.error is not None and limited.reply.error.code == ErrorCode.TIME_LIMIT
    assert napped.reply.ok and napped.attempt == 1
    assert len(marker.read_text().split()) == 1  # it ran once: finished, not redelivered


async def test_a_job_reply_to_a_store_queue_that_does_not_exist_yet_is_kept_not_lost(
    amqp_url: str, vhost: Vhost, start_worker: StartWorker
) -> None:
    start_worker()
    queue = names.replies_queue("not-declared-yet")
    async with amqp_client(amqp_url) as client:
        job_id = await client.send("echo", {"kept": True}, reply_to=queue, persistent=True)
        await asyncio.to_thread(wait_for, lambda: queue in vhost.list_queues(), 20, 0.1,
                                "the worker to declare the reply queue")
        [reply] = await client.drain_queue(queue, expect=1, timeout=20)
    assert reply.correlation_id == job_id
    assert replies.decode(reply.body).result == {"kept": True}


async def test_a_delivery_cancelled_as_its_slot_comes_free_leaves_the_slot_free() -> None:
    """aiormq cancels a closed channel's delivery tasks; one waiting for a handler slot may be
    cancelled in the very moment the slot is handed to it. The slot must come back, or a
    consumer of one slot serves nothing again (CI's SIGSTOP scenario found this)."""
    import asyncio

    from workers.consumer.slot import take_slot

    slots, leaving = asyncio.Semaphore(1), asyncio.Event()
    assert await take_slot(slots, leaving)  # the running handler's
    waiting = asyncio.ensure_future(take_slot(slots, leaving))
    await asyncio.sleep(0)  # it waits for the slot
    assert not waiting.done()
    slots.release()  # the handler ends: its slot goes to the waiting delivery...
    await asyncio.sleep(0)  # ...whose acquire completes before the delivery runs again
    waiting.cancel()  # and its channel closes now
    try:
        await waiting
    except asyncio.CancelledError:
        pass
    assert not slots.locked()  # free for the next delivery
    assert await asyncio.wait_for(take_slot(slots, leaving), 1)
