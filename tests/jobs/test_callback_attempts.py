"""One callback attempt against real HTTP servers on loopback: bounded in total time, reading
little of the answer, retrying a DNS hiccup, and telling the caller nothing about internal DNS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.webhooks import CallbackUrlRefused, Signer, UrlGuard
from gateway.webhooks.sender import send
from tests.support.jobs import SECRET
from tests.support.receiver import Receiver

SIGNER = Signer(SECRET)


async def _send(guard: UrlGuard, url: str, timeout: float = 5.0) -> tuple[bool, bool, str]:
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
        result = await send(client, guard, SIGNER, url, "msg_1", "job1", 1, b'{"id": "job1"}',
                            timeout)
    return result.delivered, result.retry, result.error or ""


async def test_a_refusal_does_not_reveal_what_the_name_resolved_to() -> None:
    async def internal(host: str, port: int) -> list[str]:
        return ["10.11.12.13"]

    with pytest.raises(CallbackUrlRefused) as refused:
        await UrlGuard([], resolver=internal).check("https://hooks.example/x")
    assert "10.11.12.13" not in str(refused.value)
    assert "non-public" in str(refused.value)


async def test_a_dns_failure_at_send_time_is_retried_not_final(receiver: Receiver) -> None:
    answers: list[list[str] | None] = [None, ["127.0.0.1"]]

    async def flaky(host: str, port: int) -> list[str]:
        answer = answers.pop(0)
        if answer is None:
            raise OSError("temporary failure in name resolution")
        return answer

    guard = UrlGuard(["hooks.test"], resolver=flaky)
    port = receiver.url.rsplit(":", 1)[1]
    first = await _send(guard, f"http://hooks.test:{port}/hook")
    second = await _send(guard, f"http://hooks.test:{port}/hook")
    assert first[:2] == (False, True) and "does not resolve" in first[2]
    assert second[:2] == (True, False)
    assert len(receiver.requests) == 1


@pytest.fixture
async def stalling_server() -> AsyncIterator[tuple[str, dict[str, bytes]]]:
    """Answers per path: /trickle sends its head a byte every 0.2 s forever; /huge declares
    100 MB, sends 64 KB and stalls; /stalled answers 200 and never sends its body."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length")), 0)
        await reader.readexactly(length)
        try:
            if head.startswith(b"POST /trickle"):
                writer.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while True:
                    writer.write(b"x")
                    await writer.drain()
                    await asyncio.sleep(0.2)
            if head.startswith(b"POST /stalled"):
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                await writer.drain()
                await asyncio.sleep(30)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n"
                         + b"y" * 65536)
            await writer.drain()
            await asyncio.sleep(30)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", {}
    server.close()


async def test_an_attempt_is_bounded_in_total_time_not_per_read(
    stalling_server: tuple[str, dict[str, bytes]]
) -> None:
    url, _ = stalling_server
    started = time.monotonic()
    delivered, retry, error = await _send(UrlGuard(["127.0.0.1"]), f"{url}/trickle",
                                          timeout=1.0)
    took = time.monotonic() - started
    assert (delivered, retry) == (False, True) and "timed out" in error
    assert took < 2.0  # each byte came within any per-read timeout: only a total bound ends it


async def test_a_2xx_ends_delivery_at_once_whatever_its_body_does(
    stalling_server: tuple[str, dict[str, bytes]]
) -> None:
    """SPEC: any 2xx ends delivery. A receiver that answers 200 and never finishes its body was
    timed out and retried (a duplicate, and `failed` at the window's end)."""
    url, _ = stalling_server
    started = time.monotonic()
    delivered, retry, error = await _send(UrlGuard(["127.0.0.1"]), f"{url}/stalled",
                                          timeout=5.0)
    assert (delivered, retry, error) == (True, False, "")
    assert time.monotonic() - started < 2.0


async def test_an_unreachable_address_falls_back_to_the_next_the_name_resolved_to(
    receiver: Receiver
) -> None:
    """`localhost` as `::1` first on many hosts, with the receiver on 127.0.0.1 only."""
    async def v6_first(host: str, port: int) -> list[str]:
        return ["127.0.0.2", "127.0.0.1"]  # nothing listens on the first (refused)

    port = receiver.url.rsplit(":", 1)[1]
    delivered, retry, error = await _send(UrlGuard(["hooks.test"], resolver=v6_first),
                                          f"http://hooks.test:{port}/hook")
    assert (delivered, retry, error) == (True, False, "")
    assert receiver.requests[0].headers["host"] == f"hooks.test:{port}"


async def test_a_receiver_that_cannot_be_reached_at_any_address_is_retried(
    receiver: Receiver
) -> None:
    async def nowhere(host: str, port: int) -> list[str]:
        return ["127.0.0.2", "127.0.0.3"]

    port = receiver.url.rsplit(":", 1)[1]
    delivered, retry, error = await _send(UrlGuard(["hooks.test"], resolver=nowhere),
                                          f"http://hooks.test:{port}/hook")
    assert (delivered, retry) == (False, True)
    assert "127.0.0.2" in error and "127.0.0.3" in error
    assert receiver.requests == []


async def test_a_large_answer_is_not_waited_for(
    stalling_server: tuple[str, dict[str, bytes]]
) -> None:
    url, _ = stalling_server
    started = time.monotonic()
    delivered, retry, _ = await _send(UrlGuard(["127.0.0.1"]), f"{url}/huge", timeout=5.0)
    assert (delivered, retry) == (True, False)
    assert time.monotonic() - started < 2.0  # it did not wait for the 100 MB


async def test_an_address_that_drops_connections_falls_back_to_the_next() -> None:
    """A broken route times the connect out (no refusal comes): the next address is tried
    within the same attempt. A unit with httpx's mock transport: no real address drops
    packets here."""
    tried: list[str] = []

    def transport(request: httpx.Request) -> httpx.Response:
        tried.append(request.url.host)
        if request.url.host == "2001:db8::1":
            raise httpx.ConnectTimeout("timed out", request=request)
        return httpx.Response(204)

    async def both(host: str, port: int) -> list[str]:
        return ["2001:db8::1", "127.0.0.1"]

    async with httpx.AsyncClient(transport=httpx.MockTransport(transport)) as client:
        result = await send(client, UrlGuard(["hooks.test"], resolver=both), SIGNER,
                            "http://hooks.test:8000/h", "msg_1", "job1", 1, b"{}", 5.0)
    assert (result.delivered, tried) == (True, ["2001:db8::1", "127.0.0.1"])


def test_the_wait_after_failed_attempt_n_is_random_below_backoff_times_2_to_the_n_minus_1() -> None:
    """The formula the README states, with full jitter and the cap (`protocol.backoff`, the one
    schedule of every retry in rpcfleet)."""
    from protocol import backoff

    for attempt, bound in ((1, 1.0), (2, 2.0), (4, 8.0), (10, 300.0), (10_000, 300.0)):
        waits = [backoff.delay(attempt, 1.0, 300.0) for _ in range(2000)]
        assert all(0 <= wait <= bound for wait in waits), attempt
        assert max(waits) > bound * 0.9 and min(waits) < bound * 0.1  # spread over the range
