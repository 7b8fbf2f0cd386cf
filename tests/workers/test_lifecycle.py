"""Consumers under stress: heartbeats during CPU work, draining on SIGTERM, hard time limits."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from protocol import ErrorCode, names
from rpcfleet.broker import LocalBroker
from tests.support.amqp_client import amqp_client
from tests.support.fleet import StartWorker
from tests.support.processes import consumer_count
from tests.support.rabbit import Vhost
from tests.support.waiting import async_wait_for


def _pids(marker: Path) -> list[int]:
    return [int(line) for line in marker.read_text().split()] if marker.exists() else []


@pytest.mark.slow  # a long scenario: in .ci/run's slow step
async def test_a_cpu_bound_handler_for_10s_with_a_2s_heartbeat_is_not_redelivered(
    amqp_url: str, start_worker: StartWorker
) -> None:
    worker = start_worker(heartbeat=2)
    async with amqp_client(amqp_url) as client:
        answer = await client.call("spin", {"seconds": 10}, timeout=40)
    assert answer.reply.ok, answer.reply
    assert answer.attempt == 1  # never redelivered: the connection stayed up throughout
    assert answer.reply.result["loops"] > 0
    assert "missed heartbeats" not in worker.output()
    assert "reconnect" not in worker.output().lower()


async def test_sigterm_drains_finishes_in_flight_work_and_leaves_the_rest_queued(
    amqp_url: str, vhost: Vhost, start_worker: StartWorker, tmp_path: Path
) -> None:
    worker = start_worker(processes=1, prefetch=1)
    marker = tmp_path / "started"
    async with amqp_client(amqp_url) as client:
        running = await client.send("sleep", {"seconds": 2, "marker": str(marker)}, timeout=30)
        waiting = await client.send("sleep", {"seconds": 2, "marker": str(marker)}, timeout=30)
        await async_wait_for(lambda: _pids(marker), what="the first sleep to start")
        worker.signal(signal.SIGTERM)
        answer = await client.answer(running, timeout=20)
        assert await asyncio.to_thread(worker.wait, 20) == 0
    assert answer.reply.ok and answer.attempt == 1
    assert len(_pids(marker)) == 1  # the queued one was never taken
    ready, unacked, consumers = vhost.queue_counts(names.pool_queue("basic"))
    assert (ready, unacked, consumers) == (1, 0, 0)
    del waiting


async def test_sigterm_hands_back_what_was_prefetched_but_not_started(
    amqp_url: str, vhost: Vhost, start_worker: StartWorker, tmp_path: Path
) -> None:
    """A draining consumer (SIGTERM, a recycle, an elastic pool retiring it) finishes what runs
    and gives back what it holds but has not started, as the attempt it is: another consumer
    takes it at once instead of waiting for the drain (issue 22, 3.4)."""
    leaving = start_worker(processes=1, prefetch=3)
    marker = tmp_path / "started"
    async with amqp_client(amqp_url) as client:
        sent = [await client.send("sleep", {"seconds": seconds, "marker": str(marker)},
                                  timeout=60) for seconds in (6, 1, 1)]
        await async_wait_for(lambda: _pids(marker), what="the first sleep to start")
        _, unacked, _ = vhost.queue_counts(names.pool_queue("basic"))
        assert unacked == 3  # one running, two held
        staying = start_worker(processes=1, prefetch=1, wait=False)
        await async_wait_for(lambda: consumer_count(amqp_url, names.pool_queue("basic")) == 2,
                             timeout=30, what="a second consumer")
        assert len(_pids(marker)) == 1  # the first still runs, the other two are held
        leaving.signal(signal.SIGTERM)
        answers = [await client.answer(call, timeout=30) for call in sent]
        assert await asyncio.to_thread(leaving.wait, 20) == 0
    ran_in = _pids(marker)
    assert all(a.reply.ok and a.attempt == 1 for a in answers), answers
    assert len(ran_in) == 3  # each ran once
    assert ran_in[1] == ran_in[2] != ran_in[0]  # the two held ones ran in the staying one
    assert "handing back" not in staying.output()


async def test_a_handler_past_its_time_limit_gets_time_limit_and_its_process_is_replaced(
    amqp_url: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    start_worker("tests.pools.limits:pool", pool="limits", processes=1)
    marker = tmp_path / "started"
    async with amqp_client(amqp_url) as client:
        answer = await client.call("slow", {"seconds": 30, "marker": str(marker)}, timeout=20)
        assert answer.reply.error is not None
        assert answer.reply.error.code == ErrorCode.TIME_LIMIT
        first = _pids(marker)[0]
        after = await client.call("quick", {}, timeout=20)
    assert after.reply.ok and after.reply.result["pid"] != first  # a fresh process, same slot
    assert after.worker == answer.worker
    assert len(_pids(marker)) == 1


async def test_after_a_time_limit_nothing_held_starts_in_the_leaving_process(
    amqp_url: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    """Prefetch above concurrency: a request held behind a handler abandoned past its time limit
    does not start in the process that is leaving (where the drain would cut it); it goes back
    as the attempt it is and runs in the replacement (issue 22, 3.4)."""
    start_worker("tests.pools.limits:pool", pool="limits", processes=1, prefetch=2)
    marker = tmp_path / "started"
    async with amqp_client(amqp_url) as client:
        abandoned = await client.send("slow", {"seconds": 30, "marker": str(marker)}, timeout=30)
        held = await client.send("nap", {"seconds": 0.2, "marker": str(marker)}, timeout=30)
        limited = await client.answer(abandoned, timeout=20)
        napped = await client.answer(held, timeout=20)
    assert limited.reply.error is not None and limited.reply.error.code == ErrorCode.TIME_LIMIT
    assert napped.reply.ok and napped.attempt == 1
    leaving, replacement = _pids(marker)
    assert napped.reply.result["pid"] == replacement != leaving


async def test_a_consumer_stuck_in_a_gil_holding_call_is_killed_and_the_job_answered_not_rerun(
    amqp_url: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    worker = start_worker("tests.pools.limits:pool", pool="limits", processes=1, kill_grace=1)
    marker = tmp_path / "started"
    async with amqp_client(amqp_url) as client:
        answer = await client.call("hog", {"seconds": 20, "marker": str(marker)}, timeout=30)
    assert answer.reply.error is not None
    assert answer.reply.error.code == ErrorCode.TIME_LIMIT
    assert answer.attempt == 2  # answered on redelivery, by the replacement
    assert len(_pids(marker)) == 1  # never run a second time
    assert "killing it" in worker.output()
    await async_wait_for(lambda: consumer_count(amqp_url, names.pool_queue("limits")) == 1,
                         what="the replacement consumer")


@pytest.mark.slow  # backs off for seconds
def test_a_slot_whose_consumers_die_before_serving_is_forked_again_ever_more_slowly(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """Its broker vhost gone (or the broker not up yet, credentials refused): each replacement
    dies at its first connect. Its slot is forked again after 1, 2, 4 ... s, not once a second
    for ever with a traceback each time."""
    import os
    import re

    from tests.support.fleet import worker_factory
    from tests.support.rabbit import create_vhost, delete_vhost
    from tests.support.waiting import wait_for

    own = create_vhost(broker)
    factory = worker_factory(own.amqp_url, tmp_path)
    start = next(factory)
    try:
        worker = start()
        [pid] = re.findall(r"slot 0: consumer pid (\d+)", worker.output())
        delete_vhost(own)
        os.kill(int(pid), signal.SIGKILL)
        wait_for(lambda: "forking a replacement in 4 s (it died before serving)"
                 in worker.output(), timeout=30, what="the slot's pauses to grow",
                 detail=worker.output)
        assert "forking a replacement in 2 s (it died before serving)" in worker.output()
    finally:
        next(factory, None)
