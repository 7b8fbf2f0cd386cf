"""The pool the soak runs (`bench.soak`): a sync echo, a job that reports progress, and a job
that waits until it is cancelled (async, so a cancel stops it at once)."""

from __future__ import annotations

import asyncio

from workers import JobContext, Pool

pool = Pool("soak")


@pool.method
async def echo(params: dict[str, object]) -> dict[str, object]:
    return params


@pool.method
async def task(params: dict[str, float], job: JobContext) -> float:
    """~0.1 s of waiting in three steps, each reported."""
    for step in (1, 2, 3):
        await asyncio.sleep(float(params.get("seconds", 0.1)) / 3)
        job.progress(step / 3, f"step {step}")
    return float(params.get("seconds", 0.1))


@pool.method
async def hang(params: dict[str, float]) -> str:
    """Waits (for a cancel, in the soak)."""
    await asyncio.sleep(float(params.get("seconds", 30)))
    return "not cancelled"
