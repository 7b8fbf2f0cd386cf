"""New handler code without a cache reload: the supervisor imports the pool's module again and
replaces its consumers one at a time, while calls keep being answered."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.amqp_client import TestClient, amqp_client
from tests.support.fleet import StartWorker
from tests.support.waiting import async_wait_for

POOL_SOURCE = '''
import os
import time

from workers import Pool


def load() -> dict[str, float]:
    return {{"loaded_at": time.time()}}


pool = Pool("hot", cache=load)


@pool.method
def version(cache: dict[str, float]) -> dict[str, object]:
    return {{"version": {version}, "pid": os.getpid(), "loaded_at": cache["loaded_at"]}}
'''


def write_pool(folder: Path, version: int | str) -> None:
    path = folder / "hotpool.py"
    before = path.stat().st_mtime if path.exists() else 0.0
    path.write_text(POOL_SOURCE.format(version=version))
    os.utime(path, (time.time(), max(time.time(), before + 1)))  # a visible mtime change


async def versions_served(client: TestClient, count: int = 6) -> dict[int, Any]:
    """pid -> version, over a few calls (each must succeed)."""
    answers = await asyncio.gather(*(client.call("version", {}, timeout=15) for _ in range(count)))
    assert all(answer.reply.ok for answer in answers)
    return {answer.reply.result["pid"]: answer.reply.result for answer in answers}


async def roll_to(client: TestClient, version: int) -> dict[int, Any]:
    """Keep calling (every call answered) until two consumers serve `version`."""
    seen: dict[int, Any] = {}

    async def both_new() -> bool:
        seen.update({pid: r for pid, r in (await versions_served(client)).items()
                     if r["version"] == version})
        return len(seen) >= 2

    await async_wait_for(both_new, timeout=40, what=f"two consumers serving version {version}")
    return seen


async def test_sighup_rolls_new_code_through_the_consumers_and_keeps_the_cache(
    amqp_url: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    write_pool(tmp_path, 1)
    supervisor = start_worker("hotpool:pool", pool="hot", processes=2,
                              extra=("--app-dir", str(tmp_path)))
    async with amqp_client(amqp_url) as client:
        first = await roll_to(client, 1)
        write_pool(tmp_path, 2)
        supervisor.signal(signal.SIGHUP)
        second = await roll_to(client, 2)
        assert not set(first) & set(second)  # new processes ...
        loaded = {r["loaded_at"] for r in [*first.values(), *second.values()]}
        assert len(loaded) == 1  # ... over the same cache, never reloaded

        write_pool(tmp_path, "1 +")  # broken code: a SyntaxError at import
        supervisor.signal(signal.SIGHUP)
        await async_wait_for(lambda: "reloading hotpool:pool failed" in supervisor.output(),
                             what="the failed reload to be logged")
        still = await versions_served(client)
        assert {r["version"] for r in still.values()} == {2}
        assert set(still) <= set(second)  # the serving consumers were left alone
    assert "replacing 2 consumers one at a time, same cache" in supervisor.output()


async def test_with_reload_a_saved_module_is_picked_up_by_itself(
    amqp_url: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    write_pool(tmp_path, 1)
    start_worker("hotpool:pool", pool="hot", processes=2,
                 extra=("--app-dir", str(tmp_path), "--reload"))
    async with amqp_client(amqp_url) as client:
        await roll_to(client, 1)
        write_pool(tmp_path, 2)
        await roll_to(client, 2)


@pytest.mark.slow  # two pools and a reload
async def test_new_code_that_takes_a_method_of_another_pool_is_refused_and_the_pool_serves_on(
    amqp_url: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    """A reload whose new code adds `echo`, which pool basic serves: the first new consumer
    would find it claimed and exit 78, which stops the whole pool. The supervisor checks the
    claims before rolling, refuses the new code, and the old consumers serve on."""
    write_pool(tmp_path, 1)
    hot = start_worker("hotpool:pool", pool="hot", processes=1,
                       extra=("--app-dir", str(tmp_path)))
    start_worker()  # pool basic: echo is its
    async with amqp_client(amqp_url) as client:
        before = await versions_served(client, 2)
        path = tmp_path / "hotpool.py"
        path.write_text(POOL_SOURCE.format(version=2) + '''

@pool.method
def echo(params: dict[str, object]) -> dict[str, object]:
    return {"taken": True}
''')
        os.utime(path, (time.time(), time.time() + 2))
        hot.signal(signal.SIGHUP)
        await async_wait_for(lambda: "new code refused" in hot.output(), timeout=30,
                             what="the refused reload to be logged")
        after = await versions_served(client, 2)
        echoed = await client.call("echo", {"n": 1}, timeout=15)
    assert set(after) == set(before) and {r["version"] for r in after.values()} == {1}
    assert echoed.reply.result == {"n": 1}  # still pool basic's
    assert hot.alive()
    assert "'echo'" in hot.output()
