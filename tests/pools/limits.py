"""A pool whose methods run past their hard time limits, politely or not."""

from __future__ import annotations

import ctypes
import os
import time

from workers import Pool

pool = Pool("limits", cache=lambda: {"loaded_by": os.getpid()}, time_limit=30)


def _mark(params: dict[str, object]) -> None:
    marker = params.get("marker")
    if marker:
        with open(str(marker), "a") as out:
            out.write(f"{os.getpid()}\n")


@pool.method(time_limit=1)
def slow(params: dict[str, object]) -> str:
    _mark(params)
    time.sleep(float(params.get("seconds", 5)))  # type: ignore[arg-type]
    return "finished"


@pool.method(time_limit=1)
def hog(params: dict[str, object]) -> str:
    """A C call that holds the GIL: the consumer cannot even send its time_limit reply."""
    _mark(params)
    ctypes.PyDLL(None).sleep(int(params.get("seconds", 8)))  # type: ignore[arg-type]
    return "finished"


@pool.method
def quick(params: dict[str, object]) -> dict[str, object]:
    return {"pid": os.getpid(), "loaded_by": pool_cache_pid()}


def pool_cache_pid() -> int:
    return os.getppid()


@pool.method
def nap(params: dict[str, object]) -> dict[str, object]:
    """Sleeps well within its limit: a neighbour of a handler that gets abandoned."""
    _mark(params)
    time.sleep(float(params.get("seconds", 2)))  # type: ignore[arg-type]
    return {"pid": os.getpid()}
