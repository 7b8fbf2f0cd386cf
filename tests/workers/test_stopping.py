"""Stopping a running handler (a cancel, a hard time limit): `workers.consumer.outcome`.

An async handler runs in the task that awaits it (no task of its own per delivery); a stop
cancels that task and is taken back once the handler has ended, so the task goes on as if
nothing happened, and a cancel of the task from elsewhere is never mistaken for a stop.
Unit tests of the asyncio contract: no broker involved.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import pytest

from protocol import ErrorCode, replies
from workers.consumer.outcome import Outcome, Stopper, run_batch, run_handler
from workers.handlers import Handler

MAX_RESULT = 1 << 20


def handler(func: Callable[..., Any], time_limit: float | None = None) -> Handler:
    return Handler.build(func, func.__name__, time_limit)


@asynccontextmanager
async def executor() -> AsyncIterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(1, thread_name_prefix="handler") as pool:
        yield pool


async def run(h: Handler, stopper: Stopper | None = None) -> Outcome:
    async with executor() as pool:
        return await run_handler(h, {}, stopper or Stopper(), pool, MAX_RESULT)


def error_of(outcome: Outcome) -> tuple[str, str]:
    answer = replies.decode(outcome.body)
    assert answer.failed_with is not None, answer
    return answer.failed_with.code, answer.failed_with.message


async def timeouts_still_work() -> None:
    """A later timeout in the same task still raises TimeoutError (the task's cancel count is
    straight), and the task can still sleep."""
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.02):
            await asyncio.sleep(5)
    await asyncio.sleep(0)


def waiter(began: asyncio.Event, *, swallow: bool = False) -> Callable[[], Awaitable[str]]:
    """A handler that says it began, then waits; `swallow`: it catches a cancel and returns."""
    async def waits() -> str:
        began.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            if not swallow:
                raise
            return "kept going"
        return "finished"

    return waits


async def started(func: Callable[[], Awaitable[str]], began: asyncio.Event,
                  stopper: Stopper) -> asyncio.Task[Outcome]:
    """The handler running in a task of its own, once it has begun."""
    task = asyncio.ensure_future(run(handler(func), stopper))
    await asyncio.wait_for(began.wait(), 5)
    return task


async def test_an_async_handler_runs_in_the_task_that_awaits_it() -> None:
    async def where() -> int:
        return id(asyncio.current_task())

    outcome = await run(handler(where))
    assert outcome.ok
    assert replies.decode(outcome.body).result == id(asyncio.current_task())


async def test_an_async_handler_past_its_time_limit_fails_with_time_limit_and_the_task_goes_on(
) -> None:
    async def sleeps() -> str:
        await asyncio.sleep(30)
        return "finished"

    started = time.monotonic()
    outcome = await run(handler(sleeps, time_limit=0.1))
    assert time.monotonic() - started < 5
    assert error_of(outcome)[0] == ErrorCode.TIME_LIMIT
    assert outcome.must_exit
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await timeouts_still_work()


async def test_a_cancel_stops_a_running_async_handler() -> None:
    began, stopper = asyncio.Event(), Stopper()
    running = await started(waiter(began), began, stopper)
    assert stopper.stop(ErrorCode.CANCELLED)
    outcome = await asyncio.wait_for(running, 5)
    assert error_of(outcome) == (ErrorCode.CANCELLED, "the job was cancelled while running")
    assert outcome.must_exit


async def test_a_handler_that_has_ended_can_no_longer_be_stopped() -> None:
    async def quick() -> str:
        return "done"

    stopper = Stopper()
    outcome = await run(handler(quick), stopper)
    assert outcome.ok
    assert not stopper.stop(ErrorCode.CANCELLED)  # would cancel whatever the task does next
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await timeouts_still_work()


async def test_a_handler_that_swallows_the_stop_returns_its_result_and_leaves_no_cancel_behind(
) -> None:
    async def then_time_out() -> Outcome:
        stubborn = waiter(asyncio.Event(), swallow=True)
        outcome = await run(handler(stubborn, time_limit=0.05))
        await timeouts_still_work()
        return outcome

    outcome = await asyncio.wait_for(asyncio.ensure_future(then_time_out()), 5)
    assert outcome.ok
    assert replies.decode(outcome.body).result == "kept going"


async def test_a_cancel_of_the_awaiting_task_from_elsewhere_is_not_taken_for_a_stop() -> None:
    began = asyncio.Event()
    running = await started(waiter(began), began, Stopper())
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert running.cancelled()


@pytest.mark.parametrize("swallow", [False, True], ids=["handler-stops", "handler-swallows"])
async def test_a_stop_and_a_cancel_from_elsewhere_together_still_cancel_the_task(
    swallow: bool,
) -> None:
    began, stopper = asyncio.Event(), Stopper()
    running = await started(waiter(began, swallow=swallow), began, stopper)
    assert stopper.stop(ErrorCode.CANCELLED)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert running.cancelled()


async def test_a_batch_past_its_time_limit_fails_every_request_with_time_limit() -> None:
    async def batched(params: list[dict[str, Any]]) -> list[str]:
        await asyncio.sleep(30)
        return ["finished"] * len(params)

    h = Handler.build(batched, "batched", 0.05, batch=3)
    async with executor() as pool:
        outcomes = await run_batch(h, {"params": [{}, {}, {}]}, 3, Stopper(), pool, MAX_RESULT)
    assert [error_of(outcome)[0] for outcome in outcomes] == [ErrorCode.TIME_LIMIT] * 3
    await timeouts_still_work()


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt("from a handler"),
                                 asyncio.CancelledError("from a handler")])
async def test_an_async_handler_raising_a_base_exception_fails_alone(exc: BaseException) -> None:
    async def raises() -> None:
        raise exc

    outcome = await run(handler(raises))
    code, message = error_of(outcome)
    assert code == ErrorCode.WORKER_ERROR
    assert type(exc).__name__ in message
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_a_thread_handler_past_its_time_limit_fails_with_time_limit() -> None:
    def sleeps() -> str:
        time.sleep(0.5)
        return "finished"

    outcome = await run(handler(sleeps, time_limit=0.05))
    assert error_of(outcome)[0] == ErrorCode.TIME_LIMIT
    await timeouts_still_work()
