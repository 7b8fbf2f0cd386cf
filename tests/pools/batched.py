"""A pool of batched methods (SPEC 1.1) whose calls leave a trace: one line per handler call."""

from __future__ import annotations

import os

from pydantic import BaseModel

from workers import Pool

pool = Pool("batched", cache=lambda: {"loaded_by": os.getpid()})


class Item(BaseModel):
    n: int
    log: str = ""


def _trace(params: list[Item]) -> None:
    for path in {item.log for item in params if item.log}:
        with open(path, "a") as out:
            out.write(f"{len(params)}\n")


@pool.method(batch=8, batch_wait=0.3)
def square(params: list[Item]) -> list[object]:
    """Squares each n; a negative n fails its own request only."""
    _trace(params)
    return [ValueError(f"no square of {item.n} here") if item.n < 0 else item.n * item.n
            for item in params]


@pool.method(batch=4, batch_wait=0.05)
def broken(params: list[Item]) -> list[int]:
    raise RuntimeError("the whole batch failed")


@pool.method(batch=4, batch_wait=0.05)
def short(params: list[Item]) -> list[int]:
    return [1] * (len(params) + 1)  # one result too many: a bug the runtime must catch


@pool.method(batch=4, batch_wait=0.3)
def slow(params: list[Item]) -> list[int]:
    """Takes as many seconds as its first item's n (past a short consumer_timeout), traced."""
    import time

    _trace(params)
    time.sleep(params[0].n)
    return [item.n for item in params]
