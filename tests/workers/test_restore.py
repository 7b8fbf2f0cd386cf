"""A consumer whose channel the broker closes comes back by itself, once, under its prefetch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol import names, replies
from tests.support.amqp_client import amqp_client
from tests.support.fleet import StartWorker
from tests.support.processes import consumer_count
from tests.support.rabbit import Vhost, close_channels
from tests.support.rabbit import short_consumer_timeout as consumer_timeout_of
from tests.support.waiting import async_wait_for


@pytest.fixture
def short_consumer_timeout(vhost: Vhost) -> Iterator[None]:
    """The broker closes a channel whose delivery stays unacked for 2 s (checked every 0.2 s)."""
    with consumer_timeout_of(vhost, 2000):
        yield


def _queue(vhost: Vhost) -> tuple[int, int, int]:
    return vhost.queue_counts(names.pool_queue("basic"))


async def test_a_channel_closed_by_the_broker_is_restored_once_under_the_same_prefetch(
    amqp_url: str, vhost: Vhost, start_worker: StartWorker
) -> None:
    worker = start_worker(processes=1, prefetch=3)
    async with amqp_client(amqp_url) as client:
        before = await client.call("whoami", {})
        assert close_channels(vhost, "rpcfleet-worker") >= 1  # as for a double ack: 406
        await async_wait_for(lambda: "subscription restored" in worker.output(), timeout=10,
                             what="the worker to consume again")
        after = await client.call("whoami", {})
    # The same process consumes again (it was not replaced) and only once.
    assert after.reply.result["pid"] == before.reply.result["pid"]
    assert consumer_count(amqp_url, names.pool_queue("basic")) == 1
    prefetch = vhost.broker.ctl("list_consumers", "-p", vhost.name, "-q", "--no-table-headers",
                                "queue_name", "prefetch_count")
    assert f"{names.pool_queue('basic')}\t3" in prefetch
    assert worker.output().count("subscription restored") == 1
    # Its private control queue came back too (a fresh server-named one, bound again).
    await async_wait_for(lambda: _control_queues(vhost) == 1, timeout=10,
                         what="one control queue bound")
    assert worker.output().count("the control queue restored") == 1


def _control_queues(vhost: Vhost) -> int:
    """Queues bound to rpcfleet.control (each consumer process has one)."""
    rows = vhost.broker.ctl("list_bindings", "-p", vhost.name, "-q", "--no-table-headers",
                            "source_name", "destination_name")
    return len({line.split("\t")[1] for line in rows.splitlines()
                if line.startswith(names.CONTROL_EXCHANGE + "\t")})


async def test_a_job_longer_than_the_consumer_timeout_does_not_leave_the_worker_deaf(
    amqp_url: str, vhost: Vhost, start_worker: StartWorker, short_consumer_timeout: None
) -> None:
    worker = start_worker(processes=1, prefetch=2, concurrency=2)
    async with amqp_client(amqp_url) as client:
        long_job = await client.send("sleep", {"seconds": 3}, reply_to=names.REPLIES_QUEUE,
                                     persistent=True, timeout=60)
        await async_wait_for(lambda: "subscription restored" in worker.output(), timeout=10,
                             what="the broker to close the channel at its consumer_timeout and the "
                             "worker to consume again")
        # Still serving: a quick call is answered by the same, restored consumer.
        quick = await client.call("echo", {"still": "serving"}, timeout=10)
        assert quick.reply.result == {"still": "serving"}
        # The long job's own reply travels on the confirming channel, which stayed open.
        first = (await client.drain_queue(names.REPLIES_QUEUE, expect=1, timeout=20))[0]
    assert first.correlation_id == long_job
    assert replies.decode(first.body).ok  # its first run answered it
    assert first.headers[names.HEADER_ATTEMPT] == 1
    assert consumer_count(amqp_url, names.pool_queue("basic")) == 1


@pytest.mark.slow  # ~20 s
async def test_a_batch_whose_channel_closes_under_it_runs_once_and_answers_every_request(
    amqp_url: str, vhost: Vhost, start_worker: StartWorker, short_consumer_timeout: None,
    tmp_path: Path
) -> None:
    """Batched methods have the run-once rule of single ones (issue 22, #3): the broker closes
    the channel at its consumer_timeout while the batch runs; the redeliveries join the batch
    under way instead of running it again, and its replies are the ones sent."""
    start_worker("tests.pools.batched:pool", pool="batched", processes=1, prefetch=4)
    trace = tmp_path / "calls"
    async with amqp_client(amqp_url) as client:
        sent = [await client.send("slow", {"n": 3, "log": str(trace)},
                                  reply_to=names.REPLIES_QUEUE, persistent=True, timeout=60)
                for _ in range(3)]
        got = await client.drain_queue(names.REPLIES_QUEUE, expect=3, timeout=30)
        # Every delivery settled (the redeliveries too): any second run has answered by now.
        await async_wait_for(lambda: vhost.queue_counts(names.pool_queue("batched"))[:2]
                             == (0, 0), timeout=30, what="every delivery to be settled")
        got += await client.drain_queue(names.REPLIES_QUEUE, expect=99, timeout=0.5,
                                        missing_ok=True)
    # Each request answered by the one run: a redelivery is answered with that run's outcome
    # again (the job store records a job's first reply only), never by a second run.
    assert {str(m.correlation_id) for m in got} == set(sent)
    assert {(replies.decode(m.body).ok, m.body, m.headers[names.HEADER_ATTEMPT])
            for m in got} == {(True, b'{"ok":true,"result":3}', 1)}, [m.body for m in got]
    assert trace.read_text().splitlines() == ["3"]  # one handler call, of all three
