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


class Stopper:
    """Stops a running handler: a cancel, or its hard time limit (a timer, not a second task)."""

    def __init__(self) -> None:
        self.reason: ErrorCode | None = None
        self._work: asyncio.Future[Any] | None = None

    def stop(self, reason: ErrorCode) -> bool:
        if self.reason is not None or self._work is None or self._work.done():
            return False
        self.reason = reason
        self._work.cancel()
        return True


async def run_handler(
    handler: Handler,
    arguments: dict[str, Any],
    stopper: Stopper,
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
    stopper._work = work
    timer = None
    if handler.time_limit is not None:
        timer = loop.call_later(handler.time_limit, stopper.stop, ErrorCode.TIME_LIMIT)
    try:
        result = await work
    except asyncio.CancelledError:
        if stopper.reason is None:
            raise  # we are being cancelled ourselves, not the handler
        if stopper.reason is ErrorCode.CANCELLED:
            return failure(ErrorCode.CANCELLED, "the job was cancelled while running",
                           must_exit=True)
        return failure(ErrorCode.TIME_LIMIT,
                       f"{handler.name} ran past its time limit of {handler.time_limit} s",
                       must_exit=True)
    except Exception as exc:  # the handler's failure is the caller's answer, not ours
        return failure(ErrorCode.WORKER_ERROR, f"{type(exc).__name__}: {exc}")
    finally:
        if timer is not None:
            timer.cancel()
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
