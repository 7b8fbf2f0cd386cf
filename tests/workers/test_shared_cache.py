"""The supervisor loads the cache once; its consumers share it."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from tests.support.amqp_client import amqp_client
from tests.support.fleet import StartWorker
from tests.support.processes import consumer_count
from tests.support.waiting import async_wait_for
from workers.memory import private_bytes

MIB = 1024 * 1024
CONSUMER_PRIVATE_MAX = 20 * MIB  # issue 25 item 4 (measured 10.6 MiB on Python 3.11)


async def _whoami_until_both(client: object, pids: int) -> dict[int, dict[str, object]]:
    seen: dict[int, dict[str, object]] = {}
    for _ in range(40):
        answers = await asyncio.gather(*(client.call("sleep", {"seconds": 0.2})  # type: ignore[attr-defined]
                                         for _ in range(pids)))
        del answers
        who = await asyncio.gather(*(client.call("whoami", {}) for _ in range(pids)))  # type: ignore[attr-defined]
        for answer in who:
            seen[int(answer.reply.result["pid"])] = answer.reply.result
        if len(seen) >= pids:
            return seen
    raise AssertionError(f"only saw consumers {sorted(seen)}")


async def test_two_consumers_see_the_cache_loaded_once_by_the_supervisor(
    amqp_url: str, start_worker: StartWorker
) -> None:
    supervisor = start_worker(processes=2)
    async with amqp_client(amqp_url) as client:
        seen = await _whoami_until_both(client, 2)
    assert len(seen) == 2
    loaders = {entry["loaded_by"] for entry in seen.values()}
    stamps = {entry["loaded_at"] for entry in seen.values()}
    assert loaders == {supervisor.pid}  # built in the supervisor, not in a consumer
    assert supervisor.pid not in seen
    assert len(stamps) == 1  # the same object, inherited at fork
    assert len({entry["cache_id"] for entry in seen.values()}) == 1
    # Issue 25: what a consumer holds of its own once it served (pages it no longer shares
    # with the supervisor) stays small: nothing is imported or built after the fork.
    private = {pid: private_bytes(pid) for pid in seen}
    assert all(size is not None and size < CONSUMER_PRIVATE_MAX for size in private.values()), (
        {pid: f"{(size or 0) / MIB:.1f} MiB" for pid, size in private.items()})


async def test_a_consumer_killed_mid_task_is_replaced_and_its_message_answered_by_another(
    amqp_url: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    supervisor = start_worker(processes=2)
    async with amqp_client(amqp_url) as client:
        before = await _whoami_until_both(client, 2)
        marker = tmp_path / "started"
        job = await client.send("sleep", {"seconds": 3, "marker": str(marker)}, timeout=30)
        victim = (await async_wait_for(lambda: _started_pids(marker),
                                       what="the sleep to start"))[0]
        os.kill(victim, signal.SIGKILL)
        answer = await client.answer(job, timeout=30)
        assert answer.reply.ok
        assert answer.reply.result["pid"] != victim
        assert answer.reply.result["attempt"] == 2  # redelivered, counted as a new attempt
        await async_wait_for(
            lambda: asyncio.to_thread(consumer_count, amqp_url, "rpcfleet.pool.basic"),
            timeout=20, what="a replacement consumer")
        after = await _whoami_until_both(client, 2)
    assert victim not in after
    assert {e["loaded_by"] for e in after.values()} == {supervisor.pid}
    assert {e["loaded_at"] for e in after.values()} == {e["loaded_at"] for e in before.values()}


def _started_pids(marker: Path) -> list[int]:
    return [int(line) for line in marker.read_text().split()] if marker.exists() else []
