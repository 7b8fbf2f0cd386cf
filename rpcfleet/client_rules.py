"""What the client sends and how it reads the answers, one definition for `Client` and
`AsyncClient` (`rpcfleet.client`): the requests of a call and a submission, which errors may be
sent again and after how long (SPEC: errors, Retry-After, Idempotency-Key), the polls of `wait`,
and how a followed job's WebSocket ended. No I/O here: the clients do it."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import RetryCallState, retry_if_exception, stop_after_attempt
from websockets.exceptions import ConnectionClosed, InvalidStatus

from protocol import Job as _Job
from protocol import backoff

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


def job_ended(close_code: int | None) -> bool:
    """A job's socket the gateway closed normally (1000) without a terminal frame: it does so
    only once the job ended, here when the socket resumed at or past its terminal event
    (shutting down, it closes 1012, and the client resumes elsewhere)."""
    return close_code == 1000


def pause_before_resuming(exc: InvalidStatus | ConnectionClosed, drops: int) -> float:
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


def polls(timeout: float) -> Iterator[float | None]:
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


def ws_url(http: httpx.Client | httpx.AsyncClient, job_id: str, after: int) -> str:
    base = str(http.base_url).rstrip("/")
    scheme = "wss" if base.startswith("https") else "ws"
    return f"{scheme}{base[base.index(':'):]}/v1/jobs/{job_id}/ws?after={after}"


@dataclass(frozen=True)
class Request:
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


def call(method: str, params: dict[str, Any] | None, timeout: float | None) -> Request:
    query = {"timeout": f"{timeout:g}"} if timeout is not None else None
    return Request("POST", f"/v1/rpc/{method}", params or {}, query)


def submit(method: str, params: dict[str, Any] | None, callback_url: str | None,
            priority: int | None, timeout: float | None, idempotency_key: str | None
            ) -> Request:
    body: dict[str, Any] = {"params": params or {}}
    for key, value in (("callback_url", callback_url), ("priority", priority),
                       ("timeout", timeout)):
        if value is not None:
            body[key] = value
    return Request("POST", f"/v1/jobs/{method}", body,
                    headers={"Idempotency-Key": idempotency_key or uuid.uuid4().hex})


def checked(response: httpx.Response) -> Any:
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


def retry_policy(retries: int, request: Request) -> dict[str, Any]:
    return {"stop": stop_after_attempt(retries + 1), "wait": _retry_wait, "reraise": True,
            "retry": retry_if_exception(request.may_retry)}


RETRIES = 5  # tries after the first, each after the answer's Retry-After


def headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}
