"""Prefetch is a hard bound the broker itself reports, and it changes live without restarts."""

from __future__ import annotations

import asyncio

import aio_pika

from protocol import SetPrefetch, WorkerEntry, codec, names
from tests.support.amqp_client import amqp_client
from tests.support.fleet import StartWorker
from tests.support.rabbit import UnackedSample, Vhost, sample_unacked
from tests.support.waiting import async_wait_for


async def test_the_brokers_unacked_count_never_exceeds_processes_times_prefetch(
    amqp_url: str, vhost: Vhost, start_worker: StartWorker
) -> None:
    start_worker(processes=2, prefetch=2)
    async with amqp_client(amqp_url) as client:
        jobs = [await client.send("sleep", {"seconds": 0.25}, timeout=60) for _ in range(40)]
        with sample_unacked(vhost, names.pool_queue("basic")) as samples:
            answers = await asyncio.gather(*(client.answer(j, timeout=60) for j in jobs))
    assert all(a.reply.ok for a in answers)
    assert samples, "no sample of the broker's unacked count was taken"
    assert most(samples) == 4  # the bound was reached, so the check above means something


def most(samples: list[UnackedSample]) -> int:
    return max(sample.unacked for sample in samples)


async def _samples(samples: list[UnackedSample], count: int, timeout: float = 30.0) -> None:
    """Observe the broker for `count` live samples (each a rabbitmqctl round trip)."""
    await async_wait_for(lambda: len(samples) >= count, timeout=timeout,
                         what=f"{count} samples of the broker's unacked count")


async def _beats(amqp_url: str, into: list[WorkerEntry]) -> aio_pika.abc.AbstractConnection:
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(names.EVENTS_EXCHANGE, routing_key="worker.#")

    async def on_beat(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        into.append(WorkerEntry.model_validate_json(message.body))

    await queue.consume(on_beat, no_ack=True)
    return connection


async def _set_prefetch(amqp_url: str, key: str, value: int | str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(names.CONTROL_EXCHANGE)
        await exchange.publish(aio_pika.Message(codec.dumps(SetPrefetch(prefetch=value))),  # type: ignore[arg-type]
                               routing_key=key)


async def _announced(beats: list[WorkerEntry], value: int, timeout: float = 5.0) -> float:
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not (beats and beats[-1].prefetch == value):
        if loop.time() - started > timeout:
            raise AssertionError(f"prefetch {value} never announced; last beats {beats[-3:]}")
        await asyncio.sleep(0.02)
    return loop.time() - started


async def _in_force(beats: list[WorkerEntry], value: int, timeout: float = 10.0) -> None:
    """Until the last beat says `value` and no change under way: what the consumer held under
    the old value has finished, and it consumes under the new one."""
    await async_wait_for(lambda: bool(beats) and beats[-1].prefetch == value
                         and not beats[-1].resubscribing, timeout=timeout,
                         what=f"prefetch {value} in force")


async def test_prefetch_changes_live_1_3_1_under_load_within_the_value_in_force(
    amqp_url: str, vhost: Vhost, start_worker: StartWorker
) -> None:
    worker = start_worker(processes=1, prefetch=1, beat_interval=30)
    beats: list[WorkerEntry] = []
    listener = await _beats(amqp_url, beats)
    queue = names.pool_queue("basic")
    async with listener, amqp_client(amqp_url) as client:
        jobs = [await client.send("sleep", {"seconds": 0.2}, timeout=120) for _ in range(60)]
        with sample_unacked(vhost, queue) as at_one:
            await _samples(at_one, 3)
        await _set_prefetch(amqp_url, names.control_pool_key("basic"), 3)
        took_up = await _announced(beats, 3)
        await _in_force(beats, 3)
        with sample_unacked(vhost, queue) as at_three:
            await _samples(at_three, 4)
        await _set_prefetch(amqp_url, names.control_worker_key(beats[-1].id), 1)
        took_down = await _announced(beats, 1)
        await _in_force(beats, 1)
        with sample_unacked(vhost, queue) as back_at_one:
            await _samples(back_at_one, 3)
        answers = await asyncio.gather(*(client.answer(j, timeout=120) for j in jobs))
    assert all(a.reply.ok for a in answers)
    assert most(at_one) <= 1 and most(back_at_one) <= 1
    assert most(at_three) == 3
    assert took_up < 2.0 and took_down < 2.0
    assert all(b.pid != worker.pid for b in beats)  # consumers announce, not the supervisor


async def test_a_lowered_prefetch_takes_nothing_new_until_what_was_held_has_finished(
    amqp_url: str, vhost: Vhost, start_worker: StartWorker
) -> None:
    """Held 2 (one 4 s handler running, one waiting for the slot) and lowered to 1: nothing is
    taken until both have finished, however long past the drain timeout (1 s here) that is. It
    consumed again at the drain timeout, still holding both: 3 unacked, over the value."""
    start_worker(processes=1, prefetch=2, drain_timeout=1, beat_interval=30)
    beats: list[WorkerEntry] = []
    listener = await _beats(amqp_url, beats)
    queue = names.pool_queue("basic")
    async with listener, amqp_client(amqp_url) as client:
        jobs = [await client.send("sleep", {"seconds": seconds}, timeout=60)
                for seconds in (4, 0.1, 0.1, 0.1)]
        await async_wait_for(lambda: vhost.queue_counts(queue)[1] == 2, timeout=10,
                             what="two deliveries held")
        with sample_unacked(vhost, queue) as held:
            await _set_prefetch(amqp_url, names.control_pool_key("basic"), 1)
            await _in_force(beats, 1, timeout=20)
        answers = await asyncio.gather(*(client.answer(j, timeout=60) for j in jobs))
    assert all(a.reply.ok for a in answers)
    assert held and most(held) <= 2, [sample.unacked for sample in held]
