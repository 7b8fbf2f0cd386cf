"""One delivery attempt: POST the job object to the address that was checked, no redirects.

The attempt is bounded in total (the send-time check, connecting, sending, the answer), not per
read: a receiver that trickles its answer cannot hold a delivery. Of the answer only the status
matters; at most `RESPONSE_READ_LIMIT` bytes of its body are read (for the error note).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from gateway.webhooks.signing import Signer
from gateway.webhooks.urls import CallbackUrlRefused, UrlGuard

RESPONSE_READ_LIMIT = 4096  # bytes of a receiver's answer kept: enough for an error message


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
    address = f"[{checked.address}]" if ":" in checked.address else checked.address
    default_port = 443 if checked.scheme == "https" else 80
    netloc_host = checked.host if ":" not in checked.host else f"[{checked.host}]"
    headers = signer.headers(webhook_id, body, job_id, attempt)
    headers["host"] = (netloc_host if checked.port == default_port
                       else f"{netloc_host}:{checked.port}")
    extensions = {"sni_hostname": checked.host} if checked.scheme == "https" else {}
    request = client.build_request(
        "POST", f"{checked.scheme}://{address}:{checked.port}{checked.target}", content=body,
        headers=headers, extensions=extensions)
    try:
        response = await client.send(request, stream=True)
        try:
            await _read_some(response)
        finally:
            await response.aclose()
    except httpx.HTTPError as exc:
        return AttemptResult(False, True, f"{type(exc).__name__}: {exc}")
    status = response.status_code
    if 200 <= status < 300:
        return AttemptResult(True, False, None)
    if 300 <= status < 400:
        # Redirects are not followed: the receiver must give the final URL.
        return AttemptResult(False, False, f"HTTP {status} redirect (not followed)")
    # 429 and 5xx are the receiver's temporary state; other 4xx mean it refuses this payload
    # and the same bytes will be refused again.
    return AttemptResult(False, status == 429 or status >= 500, f"HTTP {status}")


async def _read_some(response: httpx.Response) -> bytes:
    kept = b""
    async for chunk in response.aiter_raw():
        kept += chunk[:RESPONSE_READ_LIMIT - len(kept)]
        if len(kept) >= RESPONSE_READ_LIMIT:
            break  # the rest is never read: closing the response drops the connection
    return kept
