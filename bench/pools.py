"""Pools the benchmarks run: handlers of a fixed duration (time.sleep: they wait, like a handler
calling out, so the numbers measure the broker round trip prefetch hides, not CPU contention)."""

from __future__ import annotations

import time

from bench.peers import work
from workers import Pool

pool = Pool("timed")


@pool.method
def work_1ms(params: dict[str, object]) -> int:
    time.sleep(0.001)
    return 1


@pool.method
def work_200ms(params: dict[str, object]) -> int:
    time.sleep(0.2)
    return 1


@pool.method
async def echo(params: dict[str, object]) -> dict[str, object]:
    """The echo every peer in `bench.peers` answers (async: on the consumer's loop, as the peers
    run theirs; a plain `def` would run on a handler thread, about 0.2 ms more CPU per call)."""
    return work.echo(params)


@pool.method
def burn(params: dict[str, object]) -> int:
    """The ~5 ms of pure-Python CPU every peer in `bench.peers` spends (on a handler thread, so
    the consumer's loop keeps its heartbeats: the peers block theirs)."""
    return work.burn(params)


@pool.method
async def burn_inline(params: dict[str, object]) -> int:
    """The same ~5 ms on the consumer's loop, as the peers run theirs: no hop to a handler
    thread and no contention for the GIL between that thread and the loop; the loop reads
    nothing while it burns (fine for milliseconds; heartbeats are 30 s apart)."""
    return work.burn(params)


@pool.method
def wait_50ms(params: dict[str, object]) -> int:
    """Waits 50 ms, as a handler calling out would (`bench.elastic`: the cores are not the
    limit, the consumers are)."""
    time.sleep(0.05)
    return 1
