"""The work every system under comparison does: the same echo, and the same ~5 ms of pure-Python
CPU (a fixed amount of arithmetic, not a timed loop, so every system does exactly as much).

The machine's speed is not constant: a vCPU here runs the same handler in 4.7 to 9 ms in short
bursts, and in about half that when both cores stay busy for seconds. So the amount is
calibrated once per run, with every core burning for seconds as under load (`calibrate`), and
handed to every worker process in `BENCH_BURN_ROUNDS`; and the ideal of scenario 2 is measured
just before each sample the same way (`ideal_rate`: every core doing nothing but the handler,
back to back, no broker, no HTTP)."""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

BURN_MS = 5.0
ROUNDS_ENV = "BENCH_BURN_ROUNDS"
DEFAULT_ROUNDS = 117_000  # about 5 ms of CPython 3.11 on the 2-core development machine
ROUNDS = int(os.environ.get(ROUNDS_ENV, DEFAULT_ROUNDS))  # read once: a worker's env is set


def echo(params: dict[str, Any]) -> dict[str, Any]:
    return params


def burn(params: dict[str, Any], count: int = ROUNDS) -> int:
    total = 0
    for n in range(count):
        total += n * n % 7
    return total


def _burn_for(count: int, seconds: float, warm_up: float) -> int:
    """Burns done back to back in `seconds`, after `warm_up` seconds of the same."""
    start = time.monotonic()
    while time.monotonic() - start < warm_up:
        burn({}, count)
    done, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        burn({}, count)
        done += 1
    return done


def ideal_rate(count: int, seconds: float = 3.0, warm_up: float = 1.0) -> float:
    """Handlers of `count` rounds per second with every core doing nothing else: the ideal."""
    cores = os.cpu_count() or 1
    with ProcessPoolExecutor(cores) as pool:
        done = pool.map(_burn_for, [count] * cores, [seconds] * cores, [warm_up] * cores)
        return sum(done) / seconds


def calibrate(target_ms: float = BURN_MS) -> tuple[int, float]:
    """Rounds for `target_ms` of work on a busy core here, and the time they then measured."""
    count = DEFAULT_ROUNDS
    for warm_up in (3.0, 1.0):  # the first from idle: the cores take seconds to reach speed
        count = round(count * target_ms / handler_ms(ideal_rate(count, warm_up=warm_up)))
    return count, handler_ms(ideal_rate(count))


def handler_ms(rate: float) -> float:
    """A handler's time on a busy core, from `ideal_rate`."""
    return (os.cpu_count() or 1) * 1000 / rate
