"""A consumer past its message or private-memory limit drains and hands its slot to a fresh fork
of the preloaded cache: nothing is lost, nothing is reloaded."""

from __future__ import annotations

import asyncio
from collections import Counter

from tests.support.amqp_client import amqp_client
from tests.support.fleet import StartWorker
from tests.support.waiting import async_wait_for
from workers.consumer.recycle import Recycling


async def test_after_max_messages_the_consumer_is_replaced_without_losing_a_message(
    amqp_url: str, start_worker: StartWorker
) -> None:
    supervisor = start_worker(max_messages=3)
    async with amqp_client(amqp_url) as client:
        answers = [await client.call("whoami", {}, timeout=20) for _ in range(7)]
    pids = [answer.reply.result["pid"] for answer in answers]
    assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4] == pids[5] != pids[6]
    assert all(answer.attempt == 1 for answer in answers)  # drained, not redelivered
    results = [answer.reply.result for answer in answers]
    assert {r["loaded_by"] for r in results} == {supervisor.pid}  # the same preloaded cache
    assert len({r["loaded_at"] for r in results}) == 1
    assert "recycled; forking a fresh one" in supervisor.output()


async def test_a_consumer_with_a_backlog_waiting_takes_no_message_past_its_limit(
    amqp_url: str, start_worker: StartWorker
) -> None:
    """The backlog is already queued, so the broker fills the prefetch slot the moment the
    third message is acked: the consumer must have cancelled its subscription before that ack."""
    start_worker(max_messages=3)
    async with amqp_client(amqp_url) as client:
        answers = await asyncio.gather(*(client.call("whoami", {}, timeout=30)
                                         for _ in range(7)))
    per_process = Counter(answer.reply.result["pid"] for answer in answers)
    assert sorted(per_process.values()) == [1, 3, 3]
    assert all(answer.attempt == 1 for answer in answers)


async def test_past_its_private_memory_limit_a_consumer_is_recycled_at_its_next_beat(
    amqp_url: str, start_worker: StartWorker
) -> None:
    supervisor = start_worker(max_private_mb=150, beat_interval=0.5)
    async with amqp_client(amqp_url) as client:
        first = (await client.call("hold", {"mb": 10})).reply.result
        assert first["held_mb"] == 10  # under the limit: kept
        leaky = (await client.call("hold", {"mb": 200})).reply.result
        assert leaky["pid"] == first["pid"]

        async def fresh_pid() -> bool:
            answer = await client.call("hold", {"mb": 1}, timeout=20)
            return answer.reply.result["pid"] != first["pid"]

        await async_wait_for(fresh_pid, timeout=20, what="a fresh consumer")
    assert "private memory" in supervisor.output()


async def test_a_recycle_decided_mid_handler_lets_it_finish_however_long_it_runs(
    amqp_url: str, start_worker: StartWorker
) -> None:
    """Past its memory limit at a beat while its handler still runs 4 s: the recycle is the
    consumer's own decision, so the handler finishes and is acked (it was cut at the drain
    timeout, 1 s here, and ran again elsewhere, over its memory limit each time)."""
    supervisor = start_worker(max_private_mb=150, beat_interval=0.5, drain_timeout=1)
    async with amqp_client(amqp_url) as client:
        answer = await client.call("hold", {"mb": 200, "seconds": 4}, timeout=30)
    assert answer.reply.ok and answer.attempt == 1, answer
    assert "private memory" in supervisor.output()
    assert "drain timed out" not in supervisor.output()


def test_recycling_reasons() -> None:
    limits = Recycling(max_messages=100, max_private_bytes=50 * 1048576)
    assert limits.reason(99, 10 * 1048576) is None
    assert "100 messages" in str(limits.reason(100, None))
    assert "private memory 60 MiB" in str(limits.reason(1, 60 * 1048576))
    assert Recycling(None, None).reason(10**9, 10**12) is None
