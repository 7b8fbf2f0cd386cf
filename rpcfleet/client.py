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
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
from tenacity import AsyncRetrying, Retrying
from websockets.asyncio.client import connect as ws_connect_async
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus
from websockets.sync.client import connect as ws_connect

from protocol import TERMINAL, JobUpdate
from rpcfleet import client_rules as rules
from rpcfleet.client_rules import RETRIES, Job, RpcfleetError

__all__ = ["AsyncClient", "Client", "Job", "RpcfleetError"]


class Client:
    def __init__(self, url: str, *, api_key: str | None = None, retries: int = RETRIES,
                 http_timeout: float = 330.0) -> None:
        self.retries = retries
        self._key = api_key
        self.http = httpx.Client(base_url=url, headers=rules.headers(api_key), timeout=http_timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, params: dict[str, Any] | None = None, *,
             timeout: float | None = None) -> Any:
        """Call a method and wait for its result (`timeout`: the call's deadline, seconds)."""
        return self._send(rules.call(method, params, timeout))["result"]

    def submit(self, method: str, params: dict[str, Any] | None = None, *,
               callback_url: str | None = None, priority: int | None = None,
               timeout: float | None = None, idempotency_key: str | None = None
               ) -> Job:
        """Submit a job: the job object, status `queued` (202)."""
        return Job.model_validate(self._send(rules.submit(method, params, callback_url, priority,
                                                     timeout, idempotency_key)))

    def job(self, job_id: str) -> Job:
        return Job.model_validate(self._send(rules.Request("GET", f"/v1/jobs/{job_id}")))

    def cancel(self, job_id: str) -> Job:
        return Job.model_validate(self._send(rules.Request("DELETE", f"/v1/jobs/{job_id}")))

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """The job once it has ended; TimeoutError if it has not within `timeout` seconds."""
        for pause in rules.polls(timeout):
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
                with ws_connect(rules.ws_url(self.http, job_id, after),
                                additional_headers=rules.headers(self._key)) as socket:
                    for frame in socket:
                        update = JobUpdate.model_validate_json(frame)
                        after, drops = update.seq, 0
                        yield update
                        if update.job.status in TERMINAL:
                            return
                if rules.job_ended(socket.close_code):
                    return  # resumed at or past its end: nothing more comes
                raise ConnectionClosedOK(None, None)  # closed before the end: resume
            except (InvalidStatus, ConnectionClosed) as exc:
                drops += 1
                time.sleep(rules.pause_before_resuming(exc, drops))  # then follow after `after`

    def _send(self, request: rules.Request) -> Any:
        for attempt in Retrying(**rules.retry_policy(self.retries, request)):
            with attempt:
                return rules.checked(self.http.request(
                    request.method, request.path, json=request.body, params=request.query,
                    headers=request.headers))
        raise AssertionError("unreachable: tenacity re-raises the last error")


class AsyncClient:
    def __init__(self, url: str, *, api_key: str | None = None, retries: int = RETRIES,
                 http_timeout: float = 330.0) -> None:
        self.retries = retries
        self._key = api_key
        self.http = httpx.AsyncClient(base_url=url, headers=rules.headers(api_key),
                                      timeout=http_timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, params: dict[str, Any] | None = None, *,
                   timeout: float | None = None) -> Any:
        return (await self._send(rules.call(method, params, timeout)))["result"]

    async def submit(self, method: str, params: dict[str, Any] | None = None, *,
                     callback_url: str | None = None, priority: int | None = None,
                     timeout: float | None = None, idempotency_key: str | None = None
                     ) -> Job:
        return Job.model_validate(await self._send(rules.submit(
            method, params, callback_url, priority, timeout, idempotency_key)))

    async def job(self, job_id: str) -> Job:
        return Job.model_validate(await self._send(rules.Request("GET", f"/v1/jobs/{job_id}")))

    async def cancel(self, job_id: str) -> Job:
        return Job.model_validate(await self._send(rules.Request("DELETE", f"/v1/jobs/{job_id}")))

    async def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        for pause in rules.polls(timeout):
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
                async with ws_connect_async(rules.ws_url(self.http, job_id, after),
                                            additional_headers=rules.headers(self._key)) as socket:
                    async for frame in socket:
                        update = JobUpdate.model_validate_json(frame)
                        after, drops = update.seq, 0
                        yield update
                        if update.job.status in TERMINAL:
                            return
                if rules.job_ended(socket.close_code):
                    return  # resumed at or past its end: nothing more comes
                raise ConnectionClosedOK(None, None)  # closed before the end: resume
            except (InvalidStatus, ConnectionClosed) as exc:
                drops += 1
                await asyncio.sleep(rules.pause_before_resuming(exc, drops))

    async def _send(self, request: rules.Request) -> Any:
        async for attempt in AsyncRetrying(**rules.retry_policy(self.retries, request)):
            with attempt:
                return rules.checked(await self.http.request(
                    request.method, request.path, json=request.body, params=request.query,
                    headers=request.headers))
        raise AssertionError("unreachable: tenacity re-raises the last error")
