"""One pool per method (SPEC 1.2): a pool that would serve a method another live pool serves
refuses to start, naming the method and both pools, before it binds anything; workers of one pool
on several hosts share its methods."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aio_pika
import pytest

from protocol import names
from tests.support.fleet import StartWorker
from tests.support.processes import consumer_count, wait_consumers
from workers.consumer.claims import EXIT_CLASH

CLASHING = '''
from workers import Pool

pool = Pool("catalog")


@pool.method
def lookup(params: dict) -> dict:
    return params


@pool.method
def echo(params: dict) -> dict:  # the basic pool's method too
    return params
'''


async def _exists(amqp_url: str, queue: str) -> bool:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        try:
            await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            return False
        return True


def test_a_pool_whose_method_another_live_pool_serves_refuses_to_start(
    amqp_url: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    start_worker()  # tests.pools.basic: echo, greet, ...
    (tmp_path / "catalog.py").write_text(CLASHING)
    second = start_worker("catalog:pool", pool="catalog", wait=False,
                          extra=("--app-dir", str(tmp_path)))
    assert second.wait(timeout=60) == EXIT_CLASH, second.output()
    output = second.output()
    assert ("method 'echo' is served by pool 'basic' already: pool 'catalog' cannot serve it "
            "too") in output
    assert "stop pool 'basic' first: its claim ends 60 s after its last consumer" in output
    assert "Traceback" not in output
    assert "cache of" not in output  # refused before its cache loads, and before it forks
    # Before anything was bound: its queue was never declared, so no copy of a call reaches it.
    assert not asyncio.run(_exists(amqp_url, names.pool_queue("catalog")))
    assert consumer_count(amqp_url, names.pool_queue("basic")) == 1  # the first pool serves on


def test_workers_of_one_pool_on_several_hosts_share_its_methods(
    amqp_url: str, start_worker: StartWorker
) -> None:
    start_worker()
    second = start_worker(processes=2)  # the same pool again: another host, as claims go
    # start_worker waits for 2 consumers on the queue, which the first worker's one and the
    # second's first already make: wait for the second's other one (CI raced here once).
    wait_consumers(amqp_url, names.pool_queue("basic"), 3, proc=second)
    assert consumer_count(amqp_url, names.pool_queue("basic")) == 3


@pytest.mark.parametrize("refusal, holder", [
    ("PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-routing-key' for queue "
     "'rpcfleet.claim.echo' in vhost '/': received 'catalog' but current is 'basic'", "basic"),
    ("PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-routing-key' for queue "
     "'rpcfleet.claim.echo' in vhost '/': received the value 'catalog' of type 'longstr' "
     "but current is the value 'basic' of type 'longstr'", "basic"),
    ("PRECONDITION_FAILED - inequivalent arg 'x-expires' for queue 'rpcfleet.claim.echo'",
     "(another pool: the claim was declared with other arguments)"),
])
def test_the_holder_is_read_from_the_brokers_refusal(refusal: str, holder: str) -> None:
    from workers.consumer.claims import _holder

    assert _holder(refusal) == holder
