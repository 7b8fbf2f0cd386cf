"""The work every system under comparison does: the same echo, and the same ~5 ms of pure-Python
CPU (a fixed amount of arithmetic, not a timed loop, so every system does exactly as much).

The amount is calibrated once per run, on the idle machine before any system starts
(`calibrate`), and handed to every worker process in `BENCH_BURN_ROUNDS`: "5 ms" then means 5 ms
on the machine measured, and the ideal of scenario 2 (2 cores / 5 ms) is the machine's own."""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

BURN_MS = 5.0
ROUNDS_ENV = "BENCH_BURN_ROUNDS"
DEFAULT_ROUNDS = 117_000  # about 5 ms of CPython 3.11 on the 2-core development machine


def rounds() -> int:
    return int(os.environ.get(ROUNDS_ENV, DEFAULT_ROUNDS))


def echo(params: dict[str, Any]) -> dict[str, Any]:
    return params


def burn(params: dict[str, Any], count: int | None = None) -> int:
    total = 0
    for n in range(rounds() if count is None else count):
        total += n * n % 7
    return total


def burn_ms(count: int, repeat: int = 40) -> float:
    """The median time of one `burn` of `count` rounds, in ms, on this process's core."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        burn({}, count)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def calibrate(target_ms: float = BURN_MS) -> tuple[int, float]:
    """Rounds for `target_ms` of work here, and the time they measured."""
    burn_ms(DEFAULT_ROUNDS, repeat=5)  # warm up
    count = round(DEFAULT_ROUNDS * target_ms / burn_ms(DEFAULT_ROUNDS))
    return count, burn_ms(count)
