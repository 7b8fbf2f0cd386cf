"""A Python client of the gateway's HTTP API (httpx): calls, jobs, typed errors, Retry-After.

    from rpcfleet.client import Client, RpcfleetError

    with Client("http://gateway:8000", api_key="...") as fleet:
        hits = fleet.call("nearest", {"vector_of": 42, "k": 3}, timeout=5)
        job = fleet.submit("reindex", {"steps": 5})          # a typed Job (status, progress...)
        for update in fleet.events(job.id):                  # every state and progress change
            print(update.seq, update.event, update.job.progress)
        done = fleet.wait(job.id, timeout=60)

`AsyncClient` is the same with `await` (and `async for` over `events`). A 503 (`overloaded`,
`no_workers`, `unavailable`) or a gateway that refused the connection is tried again after its
`Retry-After` (1 s when none), up to `retries` times (default 5: a broker node's failover takes
about a second). A job submission always carries an `Idempotency-Key` (one of its own unless
given), so a retried submission never makes a second job, and a 503 with a job id is retried too.
A sync call is retried only when nothing ran: a 503 without an id (refused before its request was
enqueued); one that carries the call's id may have run, and is raised.

`events` follows a job over its WebSocket (`/v1/jobs/{id}/ws`) from its first event (or after
`after=`), and ends after the terminal one; a dropped connection is resumed after the last event
seen, so no event is missed or repeated.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from websockets.asyncio.client import connect as ws_connect_async
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus
from websockets.sync.client import connect as ws_connect

from protocol import TERMINAL, JobUpdate, backoff
from protocol import Job as _Job

POLL_FIRST_S, POLL_MAX_S = 0.05, 1.0  # waiting for a job polls from 50 ms, doubling up to 1 s
RESUMES = 5  # a followed job's socket dropped this many times in a row ends `events`
WS_CLOSED = {1008: (401, "unauthorized"), 4404: (404, "not_found")}  # close code -> error


class Job(_Job):
    """A job as the gateway answers it: the protocol's job object and where to poll it."""

    status_url: str | None = None


class RpcfleetError(Exception):
    """An error answer of the gateway: its code (SPEC: errors), HTTP status and message. For an
    error the method's handler meant (`workers.CallError`), `code` is the application's own
    (`not_found`, `out_of_stock`...) and `details` what it added, if anything."""

    def __init__(self, status: int, code: str, message: str, call_id: str | None = None,
                 retry_after: float | None = None, details: Any = None) -> None:
        super().__init__(f"{code} ({status}): {message}")
        self.status = status
        self.code = code
        self.message = message
        self.call_id = call_id
        self.retry_after = retry_after
        self.details = details

    @property
    def retryable(self) -> bool:
        return self.status == 503


def _pause_before_resuming(exc: InvalidStatus | ConnectionClosed, drops: int) -> float:
    """How a job's socket ended, for `events` (sync and async alike): the seconds to wait before
    following it again after the last seq seen, or the error it means, raised (refused at the
    handshake, closed as not allowed / no such job, or dropped `drops` > RESUMES times)."""
    if isinstance(exc, InvalidStatus):
        raise RpcfleetError(exc.response.status_code, "http_error", str(exc)) from None
    if exc.rcvd is not None and exc.rcvd.code in WS_CLOSED:
        status, error = WS_CLOSED[exc.rcvd.code]
        raise RpcfleetError(status, error, exc.rcvd.reason) from None
    if drops > RESUMES:
        raise exc
    return backoff.ceiling(drops + 1, 0.1, POLL_MAX_S)


def _polls(timeout: float) -> Iterator[float | None]:
    """For `wait` (sync and async alike): the pause after each poll of a job, doubling from
    POLL_FIRST_S up to POLL_MAX_S (`protocol.backoff`, no jitter: one caller), then None once
    another pause would pass `timeout`."""
    deadline = time.monotonic() + timeout
    for polled in itertools.count(1):
        pause = backoff.ceiling(polled, POLL_FIRST_S, POLL_MAX_S)
        if time.monotonic() + pause > deadline:
            yield None
            return
        yield pause


def _ws_url(http: httpx.Client | httpx.AsyncClient, job_id: str, after: int) -> str:
    base = str(http.base_url).rstrip("/")
    scheme = "wss" if base.startswith("https") else "ws"
    return f"{scheme}{base[base.index(':'):]}/v1/jobs/{job_id}/ws?after={after}"


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    body: Any = None
    query: dict[str, str] | None = None
    headers: dict[str, str] | None = None

    @property
    def idempotent(self) -> bool:
        """Sent again, it cannot act twice (a job under its Idempotency-Key)."""
        return bool(self.headers and "Idempotency-Key" in self.headers)

    def may_retry(self, error: BaseException) -> bool:
        """Whether `error` leaves this request safe and worth sending again."""
        if isinstance(error, httpx.ConnectError):  # nothing was sent
            return True
        if not isinstance(error, RpcfleetError) or not error.retryable:
            return False
        return self.idempotent or error.call_id is None


def _call(method: str, params: dict[str, Any] | None, timeout: float | None) -> _Request:
    query = {"timeout": f"{timeout:g}"} if timeout is not None else None
    return _Request("POST", f"/v1/rpc/{method}", params or {}, query)


def _submit(method: str, params: dict[str, Any] | None, callback_url: str | None,
            priority: int | None, timeout: float | None, idempotency_key: str | None
            ) -> _Request:
    body: dict[str, Any] = {"params": params or {}}
    for key, value in (("callback_url", callback_url), ("priority", priority),
                       ("timeout", timeout)):
        if value is not None:
            body[key] = value
    return _Request("POST", f"/v1/jobs/{method}", body,
                    headers={"Idempotency-Key": idempotency_key or uuid.uuid4().hex})


def _checked(response: httpx.Response) -> Any:
    """The JSON of a success, or the gateway's error raised as RpcfleetError."""
    if response.status_code < 400:
        return response.json()
    details = None
    try:
        error = response.json()["error"]
        code, message, call_id = str(error["code"]), str(error["message"]), error.get("id")
        details = error.get("details")
    except (ValueError, KeyError, TypeError):
        code, message, call_id = "http_error", response.text[:200], None
    retry_after = response.headers.get("retry-after")
    raise RpcfleetError(response.status_code, code, message, call_id,
                        float(retry_after) if retry_after else None, details)


def _retry_wait(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome is not None else None
    return getattr(error, "retry_after", None) or 1.0


def _retry_policy(retries: int, request: _Request) -> dict[str, Any]:
    return {"stop": stop_after_attempt(retries + 1), "wait": _retry_wait, "reraise": True,
            "retry": retry_if_exception(request.may_retry)}


RETRIES = 5  # tries after the first, each after the answer's Retry-After


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class Client:
    def __init__(self, url: str, *, api_key: str | None = None, retries: int = RETRIES,
                 http_timeout: float = 330.0) -> None:
        self.retries = retries
        self._key = api_key
        self.http = httpx.Client(base_url=url, headers=_headers(api_key), timeout=http_timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, params: dict[str, Any] | None = None, *,
             timeout: float | None = None) -> Any:
        """Call a method and wait for its result (`timeout`: the call's deadline, seconds)."""
        return self._send(_call(method, params, timeout))["result"]

    def submit(self, method: str, params: dict[str, Any] | None = None, *,
               callback_url: str | None = None, priority: int | None = None,
               timeout: float | None = None, idempotency_key: str | None = None
               ) -> Job:
        """Submit a job: the job object, status `queued` (202)."""
        return Job.model_validate(self._send(_submit(method, params, callback_url, priority,
                                                     timeout, idempotency_key)))

    def job(self, job_id: str) -> Job:
        return Job.model_validate(self._send(_Request("GET", f"/v1/jobs/{job_id}")))

    def cancel(self, job_id: str) -> Job:
        return Job.model_validate(self._send(_Request("DELETE", f"/v1/jobs/{job_id}")))

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """The job once it has ended; TimeoutError if it has not within `timeout` seconds."""
        for pause in _polls(timeout):
            if (job := self.job(job_id)).status in TERMINAL:
                return job
            if pause is None:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout} s")
            time.sleep(pause)
        raise AssertionError("unreachable: the polls end with None")

    def events(self, job_id: str, after: int = 0) -> Iterator[JobUpdate]:
        """Every event of the job after `after`, live, until its terminal one."""
        drops = 0
        while True:
            try:
                with ws_connect(_ws_url(self.http, job_id, after),
                                additional_headers=_headers(self._key)) as socket:
                    for frame in socket:
                        update = JobUpdate.model_validate_json(frame)
                        after, drops = update.seq, 0
                        yield update
                        if update.job.status in TERMINAL:
                            return
                raise ConnectionClosedOK(None, None)  # closed before the end: resume
            except (InvalidStatus, ConnectionClosed) as exc:
                drops += 1
                time.sleep(_pause_before_resuming(exc, drops))  # then follow after `after`

    def _send(self, request: _Request) -> Any:
        for attempt in Retrying(**_retry_policy(self.retries, request)):
            with attempt:
                return _checked(self.http.request(
                    request.method, request.path, json=request.body, params=request.query,
                    headers=request.headers))
        raise AssertionError("unreachable: tenacity re-raises the last error")


class AsyncClient:
    def __init__(self, url: str, *, api_key: str | None = None, retries: int = RETRIES,
                 http_timeout: float = 330.0) -> None:
        self.retries = retries
        self._key = api_key
        self.http = httpx.AsyncClient(base_url=url, headers=_headers(api_key),
                                      timeout=http_timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, params: dict[str, Any] | None = None, *,
                   timeout: float | None = None) -> Any:
        return (await self._send(_call(method, params, timeout)))["result"]

    async def submit(self, method: str, params: dict[str, Any] | None = None, *,
                     callback_url: str | None = None, priority: int | None = None,
                     timeout: float | None = None, idempotency_key: str | None = None
                     ) -> Job:
        return Job.model_validate(await self._send(_submit(
            method, params, callback_url, priority, timeout, idempotency_key)))

    async def job(self, job_id: str) -> Job:
        return Job.model_validate(await self._send(_Request("GET", f"/v1/jobs/{job_id}")))

    async def cancel(self, job_id: str) -> Job:
        return Job.model_validate(await self._send(_Request("DELETE", f"/v1/jobs/{job_id}")))

    async def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        for pause in _polls(timeout):
            if (job := await self.job(job_id)).status in TERMINAL:
                return job
            if pause is None:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout} s")
            await asyncio.sleep(pause)
        raise AssertionError("unreachable: the polls end with None")

    async def events(self, job_id: str, after: int = 0) -> AsyncIterator[JobUpdate]:
        """Every event of the job after `after`, live, until its terminal one."""
        drops = 0
        while True:
            try:
                async with ws_connect_async(_ws_url(self.http, job_id, after),
                                            additional_headers=_headers(self._key)) as socket:
                    async for frame in socket:
                        update = JobUpdate.model_validate_json(frame)
                        after, drops = update.seq, 0
                        yield update
                        if update.job.status in TERMINAL:
                            return
                raise ConnectionClosedOK(None, None)  # closed before the end: resume
            except (InvalidStatus, ConnectionClosed) as exc:
                drops += 1
                await asyncio.sleep(_pause_before_resuming(exc, drops))

    async def _send(self, request: _Request) -> Any:
        async for attempt in AsyncRetrying(**_retry_policy(self.retries, request)):
            with attempt:
                return _checked(await self.http.request(
                    request.method, request.path, json=request.body, params=request.query,
                    headers=request.headers))
        raise AssertionError("unreachable: tenacity re-raises the last error")
