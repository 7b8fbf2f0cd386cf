"""One delivery attempt: POST the job object to the address that was checked, no redirects.

The attempt is bounded in total (the send-time check, connecting, sending, the answer's head),
not per read: a receiver that trickles its answer cannot hold a delivery. Of the answer only the
status matters, and its body is never read: a 2xx ends delivery at once (SPEC), however slowly
or endlessly its body would follow. Each address the name resolved to (and the guard checked) is
tried in turn when the one before cannot be reached (`localhost` as `::1` then `127.0.0.1`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from gateway.webhooks.signing import Signer
from gateway.webhooks.urls import CallbackUrlRefused, UrlGuard


@dataclass(frozen=True)
class AttemptResult:
    delivered: bool
    retry: bool  # worth another attempt
    error: str | None


async def send(client: httpx.AsyncClient, guard: UrlGuard, signer: Signer, url: str,
               webhook_id: str, job_id: str, attempt: int, body: bytes,
               timeout: float) -> AttemptResult:
    try:
        async with asyncio.timeout(timeout):
            return await _attempt(client, guard, signer, url, webhook_id, job_id, attempt, body)
    except TimeoutError:
        return AttemptResult(False, True, f"timed out after {timeout} s")


async def _attempt(client: httpx.AsyncClient, guard: UrlGuard, signer: Signer, url: str,
                   webhook_id: str, job_id: str, attempt: int, body: bytes) -> AttemptResult:
    try:
        checked = await guard.check(url)  # again at send time: DNS may have changed
    except CallbackUrlRefused as exc:
        return AttemptResult(False, exc.transient, str(exc))
    default_port = 443 if checked.scheme == "https" else 80
    netloc_host = checked.host if ":" not in checked.host else f"[{checked.host}]"
    headers = signer.headers(webhook_id, body, job_id, attempt)
    headers["host"] = (netloc_host if checked.port == default_port
                       else f"{netloc_host}:{checked.port}")
    extensions = {"sni_hostname": checked.host} if checked.scheme == "https" else {}
    failed: list[str] = []
    for address in checked.addresses:  # the next one only when this one cannot be reached
        literal = f"[{address}]" if ":" in address else address
        try:
            request = client.build_request(
                "POST", f"{checked.scheme}://{literal}:{checked.port}{checked.target}",
                content=body, headers=headers, extensions=extensions)
        except (httpx.InvalidURL, UnicodeError) as exc:  # the guard lets none through
            return AttemptResult(False, False, f"callback_url cannot be sent: {exc}")
        try:
            # The status decides: a 2xx ends delivery whatever its body does next, so the body
            # is not read (closing the response drops the connection).
            response = await client.send(request, stream=True)
            await response.aclose()
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # refused, or dropped
            failed.append(f"{address}: {type(exc).__name__} {exc}")
            continue
        except httpx.HTTPError as exc:
            return AttemptResult(False, True, f"{type(exc).__name__}: {exc}")
        return _by_status(response.status_code)
    return AttemptResult(False, True, "cannot connect: " + "; ".join(failed))


def _by_status(status: int) -> AttemptResult:
    if 200 <= status < 300:
        return AttemptResult(True, False, None)
    if 300 <= status < 400:
        # Redirects are not followed: the receiver must give the final URL.
        return AttemptResult(False, False, f"HTTP {status} redirect (not followed)")
    # 429 and 5xx are the receiver's temporary state; other 4xx mean it refuses this payload
    # and the same bytes will be refused again.
    return AttemptResult(False, status == 429 or status >= 500, f"HTTP {status}")
