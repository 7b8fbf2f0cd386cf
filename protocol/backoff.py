"""The one backoff schedule of rpcfleet: exponential from `base`, capped at `cap`, with full
jitter (a random share of it) so that many clients retrying one failure spread out instead of
stampeding. Pure: a caller sleeps for it (a retry loop: tenacity's `wait=`) or stores the time it
is due (a callback's next attempt, a consumer's respawn)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol


def ceiling(attempt: int, base: float, cap: float) -> float:
    """The longest wait after failed attempt `attempt` (1, 2, ...): base x 2^(attempt-1), at
    most `cap`."""
    return min(base * 2.0 ** min(max(attempt, 1) - 1, 64), cap)


def delay(attempt: int, base: float, cap: float,
          draw: Callable[[], float] = random.random) -> float:
    """The wait after failed attempt `attempt`: a random 0..ceiling (full jitter)."""
    return draw() * ceiling(attempt, base, cap)


class Attempted(Protocol):
    @property
    def attempt_number(self) -> int: ...


def wait(base: float, cap: float) -> Callable[[Attempted], float]:
    """The schedule as a retry loop's wait (tenacity's `wait=`: it passes the attempt made)."""
    return lambda state: delay(state.attempt_number, base, cap)
