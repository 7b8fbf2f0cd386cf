"""Start real `rpcfleet worker` supervisors for tests and wait until their consumers are up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from protocol import ProcessRange, names
from tests.support.processes import RPCFLEET, Proc, child_env, wait_consumers

StartWorker = Callable[..., Proc]


def worker_factory(amqp_url: str, tmp_path: Path) -> Iterator[StartWorker]:
    started: list[Proc] = []

    def start(target: str = "tests.pools.basic:pool", *, pool: str = "basic",
              processes: int | str = 1, prefetch: int = 1, wait: bool = True,
              extra: tuple[str, ...] = (), inside: tuple[str, ...] = (),
              **settings: object) -> Proc:
        """`processes`: a count or a range (`1..4`: waits for the minimum); `inside`: a prefix
        that runs the worker on another host (tests/support/netns.py)."""
        settings.setdefault("beat_interval", 1)
        env = child_env(amqp_url, **settings)
        argv = [*inside, *RPCFLEET, "worker", target, "--processes", str(processes),
                "--prefetch", str(prefetch), *extra]
        proc = Proc(argv, env, tmp_path / f"worker-{len(started)}.log")
        started.append(proc)
        if wait:
            wait_consumers(amqp_url, names.pool_queue(pool), ProcessRange.parse(processes).min,
                           proc=proc)
        return proc

    yield start
    for proc in reversed(started):
        proc.stop()


@pytest.fixture
def start_worker(amqp_url: str, tmp_path: Path) -> Iterator[StartWorker]:
    yield from worker_factory(amqp_url, tmp_path)
