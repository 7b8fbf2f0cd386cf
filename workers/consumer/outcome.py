"""Running one handler: under its hard time limit, stoppable by a cancel, off the event loop."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from protocol import ErrorCode, codec
from protocol.clock import now_ms
from protocol.replies import encode_failure, encode_success
from workers.errors import CallError
from workers.handlers import Handler


@dataclass(frozen=True)
class Outcome:
    body: bytes
    ok: bool
    code: str | None = None  # error code when not ok
    must_exit: bool = False  # the handler may still run: replace this process after the reply
    started_at: int | None = None  # epoch ms, when a handler ran
    finished_at: int | None = None
    progress_events: int = 0  # how many progress events the run sent before its reply
    # What the handler raised, for the log, when its failure is `worker_error`; None otherwise
    # (a result, a CallError: an answer the handler meant, a time limit, a cancel).
    raised: BaseException | None = None
    meant: bool = False  # a CallError: the application's answer, not a failure of the worker


class Stopper:
    """Stops a running handler: a cancel, or its hard time limit (a timer, not a second task).

    A thread's handler is stopped by cancelling the future its task awaits. An async handler
    runs in the task that awaits it, with no task of its own (one task fewer per delivery):
    stopping it cancels that task, and `_invoke` takes the cancel back (`Task.uncancel`) as the
    handler's end, so a cancel of the task from elsewhere still goes through."""

    def __init__(self) -> None:
        self.reason: ErrorCode | None = None
        self._work: asyncio.Future[Any] | None = None  # what to cancel while the handler runs

    def stop(self, reason: ErrorCode) -> bool:
        if self.reason is not None or self._work is None or self._work.done():
            return False
        self.reason = reason
        self._work.cancel()
        return True

    def _took_back(self, task: asyncio.Task[Any] | None) -> bool:
        """Once the handler has ended: take back the cancel `stop` put on `task` (its count
        would fool a later timeout in the task); True when nobody else cancels `task` too."""
        stopped_task = self.reason is not None and self._work is task  # an async handler's
        self._work = None
        if task is None:
            return True
        return task.uncancel() == 0 if stopped_task else not task.cancelling()


async def run_handler(
    handler: Handler,
    arguments: dict[str, Any],
    stopper: Stopper,
    executor: Executor,
    max_result_bytes: int,
) -> Outcome:
    started_at = now_ms()
    result, failed = await _invoke(handler, arguments, stopper, executor)
    outcome = failed if failed is not None else encode_result(result, max_result_bytes)
    return dataclasses.replace(outcome, started_at=started_at, finished_at=now_ms())


async def run_batch(
    handler: Handler,
    arguments: dict[str, Any],
    size: int,
    stopper: Stopper,
    executor: Executor,
    max_result_bytes: int,
) -> list[Outcome]:
    """One call of a batched handler for `size` requests (SPEC 1.1): item i answers request i;
    an item that is an Exception fails its request alone; a raised exception, or a result that
    is not a list of `size` items, fails them all."""
    started_at = now_ms()
    result, failed = await _invoke(handler, arguments, stopper, executor)
    if failed is None and not (isinstance(result, list | tuple) and len(result) == size):
        got = f"{len(result)} items" if isinstance(result, list | tuple) else type(result).__name__
        failed = failure(ErrorCode.WORKER_ERROR, f"{handler.name} returned {got} for a batch "
                         f"of {size} requests")
    if failed is not None:
        outcomes = [failed] * size
    else:
        outcomes = [(meant(item) if isinstance(item, CallError) else raised(item))
                    if isinstance(item, Exception) else encode_result(item, max_result_bytes)
                    for item in result]
    finished_at = now_ms()
    return [dataclasses.replace(outcome, started_at=started_at, finished_at=finished_at)
            for outcome in outcomes]


async def _invoke(
    handler: Handler,
    arguments: dict[str, Any],
    stopper: Stopper,
    executor: Executor,
) -> tuple[Any, Outcome | None]:
    """(the handler's result, None), or (None, the failure that ends its request). A cancel of
    the awaiting task from elsewhere always goes through, even one the handler swallowed."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    timer = None
    if handler.time_limit is not None:
        timer = loop.call_later(handler.time_limit, stopper.stop, ErrorCode.TIME_LIMIT)
    alone = True  # no cancel of the awaiting task but the stopper's
    result: Any = None
    ended: Outcome | None = None
    try:
        try:
            if handler.is_async:
                stopper._work = task  # runs right here: `stop` cancels this task
                result = await handler.func(**arguments)
            else:
                # A thread keeps the loop (and the AMQP heartbeats) running during CPU work.
                work = loop.run_in_executor(executor, functools.partial(handler.func, **arguments))
                stopper._work = work
                result = await work
        finally:  # the handler has ended, however: its stop can no longer land
            alone = stopper._took_back(task)
            if timer is not None:
                timer.cancel()
    except asyncio.CancelledError:
        if not alone:
            raise  # we are being cancelled ourselves, not (only) the handler
        if stopper.reason is None:
            ended = failure(ErrorCode.WORKER_ERROR, "CancelledError: the handler was cancelled "
                            "by its own code")
        elif stopper.reason is ErrorCode.CANCELLED:
            ended = failure(ErrorCode.CANCELLED, "the job was cancelled while running",
                            must_exit=True)
        else:
            ended = failure(ErrorCode.TIME_LIMIT, f"{handler.name} ran past its time limit of "
                            f"{handler.time_limit} s", must_exit=True)
    except CallError as exc:
        ended = meant(exc)
    except (Exception, SystemExit, KeyboardInterrupt) as exc:
        # The handler's failure is the caller's answer, not ours: a SystemExit or
        # KeyboardInterrupt from an async handler or a handler thread ends its request, never
        # the consumer (caught here, it never reaches the event loop).
        ended = raised(exc)
    if not alone:  # cancelled from elsewhere while the handler ran, and it carried on
        raise asyncio.CancelledError
    return (None, ended) if ended is not None else (result, None)


def encode_result(result: Any, max_result_bytes: int) -> Outcome:
    try:
        body = encode_success(result)
    except TypeError as exc:
        return failure(ErrorCode.WORKER_ERROR,
                       f"result is not JSON serialisable ({exc}): {codec.JSON_RULE}")
    if len(body) > max_result_bytes:
        return failure(
            ErrorCode.RESULT_TOO_LARGE,
            f"the reply would be {len(body)} bytes, over the limit of {max_result_bytes}",
        )
    return Outcome(body, ok=True)


def raised(exc: BaseException) -> Outcome:
    """The `worker_error` of an exception a handler raised (or returned for a batch item)."""
    return dataclasses.replace(failure(ErrorCode.WORKER_ERROR, f"{type(exc).__name__}: {exc}"),
                               raised=exc)


def meant(exc: CallError) -> Outcome:
    return Outcome(encode_failure(exc.code, exc.message, exc.status, exc.details), ok=False,
                   code=exc.code, meant=True)


def failure(code: ErrorCode, message: str, must_exit: bool = False) -> Outcome:
    return Outcome(encode_failure(code, message), ok=False, code=str(code), must_exit=must_exit)
