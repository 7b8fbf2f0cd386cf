"""Unit-test a pool's methods without a broker, as nameko's `worker_factory` or FastStream's test
broker let their users do.

    from workers.testing import PoolTester

    tester = PoolTester(pool)                      # the cache is built once, here
    assert tester.call("nearest", {"vector_of": 42, "k": 3})[0]["id"] == 42
    with pytest.raises(MethodFailed) as failed:
        tester.call("nearest", {"k": -1})
    assert failed.value.code == "invalid_params"
    assert tester.jobs[-1].progress_seen == [(0.5, "half way")]

A call goes the way a consumer would take it: the params travel as JSON (a tuple arrives a
list, a datetime a string; what JSON cannot hold raises TypeError here, as a client could not send
it) and are validated against the handler's model (`invalid_params`), a sync handler runs in a
thread under its hard time limit (`time_limit`, answered at the limit: the test does not wait for
the handler, which a consumer would leave behind when it is replaced), an exception is the
request's failure (`worker_error`), and the result is encoded and decoded as on the wire (so
a result that is not JSON, or too large, fails here as it would in production). Handlers that
take `job` get a `RecordingJob`: its progress is recorded.
Batched methods (`@pool.method(batch=N)`) take `call_batch` with one params per request (at most
N: a consumer never hands a handler more).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from protocol import ErrorCode, codec, replies
from workers.consumer.outcome import Outcome, Stopper, run_batch, run_handler
from workers.context import JobContext
from workers.handlers import Handler, InvalidParams
from workers.pool import Pool

DEFAULT_MAX_RESULT_BYTES = 16 * 1024 * 1024  # RPCFLEET_MAX_RESULT_BYTES' default
_BUILD = object()
T = TypeVar("T")


class MethodFailed(Exception):
    """The method answered with an error, as a client would receive it: its code and message;
    for an error the handler meant (`CallError`), its status and details too. When the handler
    raised, the exception it raised is this one's cause (`__cause__`): pytest shows the
    handler's own frame."""

    def __init__(self, code: str, message: str, status: int | None = None,
                 details: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.details = details


@dataclass
class RecordingJob(JobContext):
    """The `job` a handler gets under test: progress is recorded in `progress_seen`."""

    progress_seen: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._progress = self._record

    def _record(self, job_id: str, fraction: float, note: str) -> None:
        self.progress_seen.append((fraction, note))


class PoolTester:
    """Calls `pool`'s handlers in this process. `cache` replaces the pool's own (a small fake
    one, say); by default the pool's cache factory runs once, on construction."""

    def __init__(self, pool: Pool, cache: Any = _BUILD, *,
                 max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES) -> None:
        self.pool = pool
        self.cache = pool.load_cache() if cache is _BUILD else cache
        self.max_result_bytes = max_result_bytes
        self.jobs: list[RecordingJob] = []  # the `job` of every call that took one, in order
        self._ids = itertools.count(1)

    # -- blocking -------------------------------------------------------------------------------
    def call(self, method: str, params: dict[str, Any] | None = None, *,
             attempt: int = 1) -> Any:
        """The method's result as a client receives it (JSON types), or `MethodFailed`."""
        return _run(self.acall(method, params, attempt=attempt))

    def call_batch(self, method: str, params: Sequence[dict[str, Any]]) -> list[Any]:
        """One batch call: per request, its result or its `MethodFailed` (not raised)."""
        return _run(self.acall_batch(method, params))

    # -- async (for async tests) ----------------------------------------------------------------
    async def acall(self, method: str, params: dict[str, Any] | None = None, *,
                    attempt: int = 1) -> Any:
        handler = self._handler(method, batched=False)
        try:
            parsed = handler.parse_params(_as_sent({} if params is None else params))
        except InvalidParams as exc:
            raise MethodFailed(str(ErrorCode.INVALID_PARAMS), str(exc)) from None
        job = None
        if "job" in handler.wants:
            job = RecordingJob(id=f"test-{next(self._ids)}", method=method, attempt=attempt,
                               deadline=None, worker="test")
            self.jobs.append(job)
        executor = ThreadPoolExecutor(1, thread_name_prefix="handler")
        try:
            # In a task of its own, as each delivery's run is in a worker (context variables
            # and a time limit's cancel stay there).
            outcome = await asyncio.ensure_future(run_handler(
                handler, handler.arguments(parsed, self.cache, job), Stopper(), executor,
                self.max_result_bytes))
        finally:  # a handler past its limit is left running, as a consumer leaves it
            executor.shutdown(wait=False, cancel_futures=True)
        return _answer(outcome)

    async def acall_batch(self, method: str, params: Sequence[dict[str, Any]]) -> list[Any]:
        handler = self._handler(method, batched=True)
        assert handler.batch is not None
        if len(params) > handler.batch:
            raise ValueError(f"{method} takes batches of at most {handler.batch} requests (a "
                             f"consumer never hands it more), not {len(params)}")
        answers: list[Any] = [None] * len(params)
        valid: list[tuple[int, Any]] = []
        for index, raw in enumerate(params):
            try:
                valid.append((index, handler.parse_params(_as_sent(raw))))
            except InvalidParams as exc:  # answered alone, left out of the batch
                answers[index] = MethodFailed(str(ErrorCode.INVALID_PARAMS), str(exc))
        if valid:
            items = [parsed for _, parsed in valid]
            executor = ThreadPoolExecutor(1, thread_name_prefix="handler")
            try:
                outcomes = await asyncio.ensure_future(run_batch(
                    handler, handler.arguments(items, self.cache, None), len(items), Stopper(),
                    executor, self.max_result_bytes))
            finally:
                executor.shutdown(wait=False, cancel_futures=True)
            for (index, _), outcome in zip(valid, outcomes, strict=True):
                try:
                    answers[index] = _answer(outcome)
                except MethodFailed as exc:
                    answers[index] = exc
        return answers

    def _handler(self, method: str, batched: bool) -> Handler:
        handler = self.pool.handlers.get(method)
        if handler is None:
            raise MethodFailed(str(ErrorCode.UNKNOWN_METHOD),
                               f"pool {self.pool.name} has no method {method!r}")
        if bool(handler.batch) != batched:
            use = "call_batch" if handler.batch else "call"
            raise TypeError(f"{method!r} is {'' if handler.batch else 'not '}batched: use {use}")
        return handler


def _run(work: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, in a thread of its own when this one already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, work).result()


def _answer(outcome: Outcome) -> Any:
    reply = replies.decode(outcome.body)
    if reply.ok:
        return reply.result
    error = reply.failed_with
    raise MethodFailed(error.code, error.message, error.status, error.details) from outcome.raised


__all__ = ["MethodFailed", "PoolTester", "RecordingJob"]


def _as_sent(params: Any) -> Any:
    """`params` as a consumer receives them: through JSON (a copy: a handler that changes them
    changes nothing of the test's)."""
    try:
        return codec.loads(codec.dumps(params))
    except TypeError as exc:
        raise TypeError(f"params a client can send are JSON: {exc}") from None
