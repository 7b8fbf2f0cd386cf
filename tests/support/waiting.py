"""Wait on conditions with deadlines — never a bare sleep standing in for a condition.

One helper, in a blocking and an async form with the same rules: poll `condition` until it
returns something truthy (and return that), fail with `what` after `timeout`, and fail at once
when `abort` says waiting is pointless (a process it waits on exited). Async tests use
`async_wait_for`: a blocking wait would stop the event loop their clients run on.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
Abort = Callable[[], str | None]  # a reason to stop waiting, or None


class _Deadline:
    def __init__(self, timeout: float, what: str, condition: object, abort: Abort | None,
                 detail: Callable[[], str] | None) -> None:
        self.at = time.monotonic() + timeout
        self.timeout = timeout
        self.what = what or repr(condition)
        self.abort = abort
        self.detail = detail

    def check(self) -> None:
        reason = self.abort() if self.abort is not None else None
        if reason is not None:
            raise AssertionError(f"stopped waiting for {self.what}: {reason}")
        if time.monotonic() > self.at:
            extra = f"\n{self.detail()}" if self.detail is not None else ""
            raise AssertionError(f"timed out after {self.timeout}s waiting for {self.what}{extra}")


def wait_for(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.05,
             what: str = "", abort: Abort | None = None,
             detail: Callable[[], str] | None = None) -> T:
    deadline = _Deadline(timeout, what, condition, abort, detail)
    while not (last := condition()):
        deadline.check()
        time.sleep(interval)
    return last


async def async_wait_for(condition: Callable[[], T | Awaitable[T]], timeout: float = 10.0,
                         interval: float = 0.05, what: str = "", abort: Abort | None = None,
                         detail: Callable[[], str] | None = None) -> T:
    """As `wait_for`; `condition` may be a plain function or a coroutine function."""
    deadline = _Deadline(timeout, what, condition, abort, detail)

    async def value() -> T:
        result = condition()
        return await result if inspect.isawaitable(result) else result  # type: ignore[return-value]

    while not (last := await value()):
        deadline.check()
        await asyncio.sleep(interval)
    return last
