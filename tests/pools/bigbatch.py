"""A pool whose batches are larger than the supervisor's default table of running requests (16)
and whose handler holds the GIL past its time limit: the backstop must kill for all of them."""

from __future__ import annotations

import ctypes
import os

from pydantic import BaseModel

from workers import Pool

pool = Pool("bigbatch", cache=lambda: {"loaded_by": os.getpid()})


class Item(BaseModel):
    n: int
    log: str = ""


@pool.method(batch=20, batch_wait=2.0, time_limit=1)
def hog(params: list[Item]) -> list[int]:
    """One line per call in the log, then a C call that holds the GIL for 30 s."""
    for path in {item.log for item in params if item.log}:
        with open(path, "a") as out:
            out.write(f"{len(params)}\n")
    ctypes.PyDLL(None).sleep(30)
    return [item.n for item in params]
