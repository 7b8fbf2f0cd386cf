"""Running one handler: under its hard time limit, stoppable by a cancel, off the event loop."""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from protocol import ErrorCode
from protocol.replies import encode_failure, encode_success
from workers.handlers import Handler


@dataclass(frozen=True)
class Outcome:
    body: bytes
    ok: bool
    code: str | None = None  # error code when not ok
    must_exit: bool = False  # the handler may still run: replace this process after the reply


async def run_handler(
    handler: Handler,
    arguments: dict[str, Any],
    stop: asyncio.Future[str],
    executor: Executor,
    max_result_bytes: int,
) -> Outcome:
    loop = asyncio.get_running_loop()
    work: asyncio.Future[Any]
    if handler.is_async:
        work = asyncio.ensure_future(handler.func(**arguments))
    else:
        # A thread keeps the loop (and the AMQP heartbeats) running during CPU-bound work.
        work = loop.run_in_executor(executor, functools.partial(handler.func, **arguments))
    done, _ = await asyncio.wait(
        {work, stop}, timeout=handler.time_limit, return_when=asyncio.FIRST_COMPLETED
    )
    if work not in done:
        work.cancel()
        if stop in done:
            return failure(ErrorCode.CANCELLED, "the job was cancelled while running",
                           must_exit=True)
        return failure(ErrorCode.TIME_LIMIT,
                       f"{handler.name} ran past its time limit of {handler.time_limit} s",
                       must_exit=True)
    try:
        result = work.result()
    except Exception as exc:  # the handler's failure is the caller's answer, not ours
        return failure(ErrorCode.WORKER_ERROR, f"{type(exc).__name__}: {exc}")
    return encode_result(result, max_result_bytes)


def encode_result(result: Any, max_result_bytes: int) -> Outcome:
    try:
        body = encode_success(result)
    except TypeError as exc:
        return failure(ErrorCode.WORKER_ERROR, f"result is not JSON serialisable: {exc}")
    if len(body) > max_result_bytes:
        return failure(
            ErrorCode.RESULT_TOO_LARGE,
            f"the reply would be {len(body)} bytes, over the limit of {max_result_bytes}",
        )
    return Outcome(body, ok=True)


def failure(code: ErrorCode, message: str, must_exit: bool = False) -> Outcome:
    return Outcome(encode_failure(code, message), ok=False, code=str(code), must_exit=must_exit)
