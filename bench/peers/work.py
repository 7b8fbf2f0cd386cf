"""The work every system under comparison does: the same echo, and the same ~5 ms of pure-Python
CPU (a fixed amount of arithmetic, not a timed loop, so every system does exactly as much)."""

from __future__ import annotations

from typing import Any

BURN_ROUNDS = 117_000  # about 5 ms of CPython 3.11 on the 2-core development machine


def echo(params: dict[str, Any]) -> dict[str, Any]:
    return params


def burn(params: dict[str, Any]) -> int:
    total = 0
    for n in range(BURN_ROUNDS):
        total += n * n % 7
    return total
