"""Pools the worker tests run as real processes (`rpcfleet worker tests.pools.basic:pool`)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any

from pydantic import BaseModel

from workers import CallError, JobContext, Pool


def load_cache() -> dict[str, object]:
    # The loader's pid proves the cache was built by the supervisor, once.
    return {"loaded_by": os.getpid(), "loaded_at": time.time(), "table": bytes(1024 * 1024)}


pool = Pool("basic", cache=load_cache)


class Greeting(BaseModel):
    name: str
    times: int = 1


@pool.method
def echo(params: dict[str, object]) -> dict[str, object]:
    return params


@pool.method
def greet(params: Greeting) -> str:
    return " ".join([f"hello {params.name}"] * params.times)


@pool.method
def boom(params: dict[str, object]) -> None:
    raise RuntimeError(f"boom: {params.get('why', 'no reason')}")


@pool.method
def refuse(params: dict[str, Any]) -> None:
    """An error the handler means: the code, status and details its params ask for."""
    raise CallError(params["code"], params.get("message", "refused"),
                    status=params.get("status", 422), details=params.get("details"))


@pool.method
def record(params: dict[str, Any]) -> str:
    """Appends its tag to a log file: the order in which the consumer ran the calls (after
    `seconds` of work, when given: each effect committed once its work is done)."""
    time.sleep(float(params.get("seconds", 0)))
    with open(params["log"], "a") as log:
        log.write(params["tag"] + "\n")
    return params["tag"]


@pool.method
def whoami(cache: dict[str, object]) -> dict[str, object]:
    return {"pid": os.getpid(), "cache_id": id(cache), "loaded_by": cache["loaded_by"],
            "loaded_at": cache["loaded_at"], "switch_interval": sys.getswitchinterval()}


@pool.method
def sleep(params: dict[str, object], job: JobContext) -> dict[str, object]:
    marker = params.get("marker")
    if marker:  # tells the test which process runs it, the moment it starts
        with open(str(marker), "a") as out:
            out.write(f"{os.getpid()}\n")
    time.sleep(float(params.get("seconds", 1.0)))  # type: ignore[arg-type]
    return {"pid": os.getpid(), "attempt": job.attempt}


@pool.method
def spin(params: dict[str, float]) -> dict[str, object]:
    """Pure-Python CPU work: the GIL is switched, never released for long."""
    end = time.perf_counter() + float(params.get("seconds", 1.0))
    count = 0
    while time.perf_counter() < end:
        count += 1
    return {"pid": os.getpid(), "loops": count}


@pool.method
def unserialisable(params: dict[str, object]) -> object:
    return object()


@pool.method
def big(params: dict[str, int]) -> str:
    return "x" * int(params.get("size", 0))


@pool.method
def staged(params: dict[str, object], job: JobContext) -> dict[str, object]:
    """Reports half-way progress, then waits for the test to release it (a file appears)."""
    job.progress(0.5, "half way")
    release = str(params["release"])
    deadline = time.monotonic() + 30
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.02)
    job.progress(1.0, "done")
    return {"released": os.path.exists(release)}


@pool.method
def steps(params: dict[str, int], job: JobContext) -> int:
    """Reports progress `steps` times as fast as it can (1/steps, 2/steps, ... 1.0)."""
    count = int(params["steps"])
    for step in range(1, count + 1):
        job.progress(step / count, f"step {step}")
    return count


@pool.method
async def steps_async(params: dict[str, int], job: JobContext) -> int:
    """`steps` on the consumer's loop: it returns in the same turn as its last progress."""
    return steps(params, job)


_held: list[bytearray] = []  # what `hold` keeps: a handler that leaks, on purpose


@pool.method
def hold(params: dict[str, int]) -> dict[str, int]:
    """Keeps `mb` MiB of freshly written memory for the life of the process, then works on for
    `seconds` (a handler whose memory grows before it ends)."""
    _held.append(bytearray(b"x" * (int(params.get("mb", 1)) * 1048576)))
    time.sleep(float(params.get("seconds", 0)))
    return {"pid": os.getpid(), "held_mb": sum(len(block) for block in _held) // 1048576}


@pool.method
def trace(job: JobContext) -> dict[str, str]:
    """The caller's trace context, as the handler sees it."""
    return job.trace


@pool.method
def die(params: dict[str, object]) -> None:
    """A poison request: it kills the consumer that runs it, every time."""
    os.kill(os.getpid(), signal.SIGKILL)


@pool.method
def exits(params: dict[str, object]) -> None:
    raise SystemExit(3)


@pool.method
async def interrupts(params: dict[str, object]) -> None:
    raise KeyboardInterrupt("from a handler")


@pool.method
async def self_cancel(params: dict[str, object]) -> None:
    raise asyncio.CancelledError("from a handler")


@pool.method
async def cancels_own_run(params: dict[str, object]) -> str:
    """Cancels the task it runs in and swallows the cancel."""
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    try:
        await asyncio.sleep(0)
    except asyncio.CancelledError:
        pass
    return "carried on"
