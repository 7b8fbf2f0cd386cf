"""Pools the benchmarks run: handlers of a fixed duration (time.sleep: they wait, like a handler
calling out, so the numbers measure the broker round trip prefetch hides, not CPU contention)."""

from __future__ import annotations

import time

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
