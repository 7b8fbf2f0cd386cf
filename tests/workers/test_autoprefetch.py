"""prefetch=auto: hide the broker round trip for short handlers, hold one message for long ones."""

from __future__ import annotations

import asyncio

from protocol import WorkerEntry, names
from tests.support.amqp_client import TestClient, amqp_client
from tests.support.fleet import StartWorker
from tests.support.waiting import async_wait_for
from tests.workers.test_prefetch import _beats, _set_prefetch
from workers.consumer.autoprefetch import AUTO_MAX, MIN_SAMPLES, AutoPrefetch


def _fed(handler_s: float, round_trip_s: float, concurrency: int = 1) -> int | None:
    auto = AutoPrefetch(concurrency)
    for _ in range(MIN_SAMPLES):
        auto.observe_handler(handler_s)
        auto.observe_round_trip(round_trip_s)
    return auto.suggest()


def test_no_suggestion_before_enough_measurements() -> None:
    auto = AutoPrefetch(1)
    auto.observe_handler(0.001)
    auto.observe_round_trip(0.001)
    assert auto.suggest() is None


def test_short_handlers_get_enough_prefetch_to_hide_the_round_trip() -> None:
    assert _fed(0.001, 0.001) == 3  # 1 + 2 x (1 ms / 1 ms)
    assert _fed(0.0001, 0.001) == 21
    assert _fed(0.00001, 0.01) == AUTO_MAX  # bounded


def test_long_handlers_keep_one_message_per_handler() -> None:
    assert _fed(0.2, 0.0005) == 1
    assert _fed(0.2, 0.0005, concurrency=4) == 4


async def test_a_consumer_switched_to_auto_announces_it_and_settles_above_one_for_short_work(
    amqp_url: str, start_worker: StartWorker
) -> None:
    start_worker(beat_interval=0.5)
    beats: list[WorkerEntry] = []
    listener = await _beats(amqp_url, beats)
    async with listener, amqp_client(amqp_url) as client:
        await _set_prefetch(amqp_url, names.control_pool_key("basic"), "auto")
        await async_wait_for(lambda: beats and beats[-1].prefetch_mode == "auto", timeout=4,
                             what="a beat in auto mode")

        await _busy_until_raised(client, beats)
    assert beats[-1].prefetch_mode == "auto" and beats[-1].prefetch > 1


async def test_a_consumer_started_with_prefetch_auto_sizes_it_from_the_start(
    amqp_url: str, start_worker: StartWorker
) -> None:
    """`rpcfleet worker ... --prefetch auto`: no live change needed."""
    start_worker(prefetch="auto", beat_interval=0.5)
    beats: list[WorkerEntry] = []
    listener = await _beats(amqp_url, beats)
    async with listener, amqp_client(amqp_url) as client:
        await async_wait_for(lambda: beats, timeout=4, what="a beat")
        first = beats[-1]
        await _busy_until_raised(client, beats)
    assert first.prefetch_mode == "auto" and first.prefetch == 1  # starts cautious
    assert beats[-1].prefetch_mode == "auto" and beats[-1].prefetch > 1


async def test_auto_starts_with_one_delivery_per_handler_slot(
    amqp_url: str, start_worker: StartWorker
) -> None:
    """`--concurrency 3 --prefetch auto`: started at 1, two of its three handler slots stayed
    idle until auto had measured 20 handlers (minutes of long ones)."""
    start_worker(prefetch="auto", concurrency=3, beat_interval=0.5)
    beats: list[WorkerEntry] = []
    listener = await _beats(amqp_url, beats)
    async with listener:
        await async_wait_for(lambda: beats, timeout=4, what="a beat")
    assert (beats[-1].prefetch_mode, beats[-1].prefetch) == ("auto", 3)


async def _busy_until_raised(client: TestClient, beats: list[WorkerEntry]) -> None:
    """Keep the consumer busy with cheap calls until auto raises its prefetch above 1."""
    async def raised() -> bool:
        if beats[-1].prefetch > 1:
            return True
        await asyncio.gather(*(client.call("echo", {"i": i}) for i in range(50)))
        return False

    await async_wait_for(raised, timeout=30, interval=0,
                         what="auto to raise the prefetch for short work")
