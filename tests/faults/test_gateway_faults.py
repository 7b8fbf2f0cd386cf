"""Gateways killed or stopped under load: workers unharmed, every accepted job ends, every
answer whole. Slow: `./run test -m slow`, run by CI as its own step."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.faults.stage import in_background, time_to_answer
from tests.support.faults import Ledger, account, load, publish
from tests.support.fleet import StartWorker
from tests.support.gateway import StartGateway, wait_for_workers
from workers.memory import rss_bytes

pytestmark = pytest.mark.slow


def test_a_killed_gateway_leaves_the_workers_unharmed_and_its_jobs_end_after_its_restart(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    start_worker("tests.pools.ledger:pool", pool="ledger", processes=2, prefetch=2,
                 test_ledger=tmp_path / "ledger")
    state = tmp_path / "state"
    first = start_gateway(state_dir=state)
    wait_for_workers(first, 2)
    ledger = Ledger(tmp_path / "ledger")
    with httpx.Client(base_url=first.url, timeout=15) as http:
        for _ in range(30):
            ledger.submit(http, ms=200)
    pending = threading.Thread(target=load, args=(ledger, first.url, 2.0))
    pending.start()
    time.sleep(1)  # calls are in flight now: the moment of the crash, not a condition
    os.killpg(first.proc.pid, signal.SIGKILL)
    pending.join()
    second = start_gateway(state_dir=state)
    with httpx.Client(base_url=second.url, timeout=15) as http:
        report = account(ledger, http, drain_seconds=60)
        time_to_answer(http)  # the workers were not harmed
    publish("gateway SIGKILL with calls and jobs in flight", report)
    assert report.holds(), report


def test_a_gateway_stopped_with_sigterm_under_load_finishes_what_it_holds_and_cuts_nothing(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    """SIGTERM to a gateway of two processes: it stops listening (new connections are refused:
    definite failures), finishes the calls and submissions it holds, then exits 0. No answer is
    cut short; the jobs it accepted end, seen from the gateway that replaces it."""
    start_worker("tests.pools.ledger:pool", pool="ledger", processes=2, prefetch=2,
                 test_ledger=tmp_path / "ledger")
    state = tmp_path / "state"
    first = start_gateway(state_dir=state, workers=2)
    wait_for_workers(first, 2)
    ledger = Ledger(tmp_path / "ledger")
    stopped: list[float] = []

    def long_call() -> None:
        with httpx.Client(base_url=first.url, timeout=15) as http:
            # Six of them: 3 s of work for 2 consumers, well within the calls' 5 s deadline.
            ledger.call(http, ms=1000)

    def stop_in_the_middle() -> None:
        time.sleep(2)  # the moment within the load, not a wait for a condition
        holders = [threading.Thread(target=long_call) for _ in range(6)]
        for holder in holders:
            holder.start()
        time.sleep(0.5)  # the long calls are in flight now
        stopped.append(time.monotonic())
        first.proc.signal(signal.SIGTERM)
        for holder in holders:
            holder.join()

    fault = threading.Thread(target=stop_in_the_middle)
    fault.start()
    try:
        load(ledger, first.url, 5.0)
    finally:
        fault.join()
    exit_code = first.proc.wait(timeout=20)
    exited_after = time.monotonic() - stopped[0]
    second = start_gateway(state_dir=state)
    with httpx.Client(base_url=second.url, timeout=15) as http:
        report = account(ledger, http, drain_seconds=60)
    held = [a for a in ledger.attempts if a.at - a.seconds < stopped[0] < a.at]
    refused = [a for a in ledger.attempts if a.error and "ConnectError" in a.error]
    # A keep-alive connection closed as a request arrives on it (HTTP/1.1 allows it: clients
    # retry with an Idempotency-Key) is reset before the request is read: it never runs. A
    # request that ran and still lost its answer was cut: there must be none.
    ran = set(ledger.effects().values())
    reset = [a for a in ledger.attempts if a.error and a not in refused]
    cut = [a for a in reset if a.value in ran]
    publish("gateway SIGTERM under load (2 processes)", report,
            f"exited {exit_code} after {exited_after:.1f} s; {len(held)} requests held at the "
            f"signal, {sum(a.outcome == 'ok' for a in held)} answered; {len(refused)} "
            f"connections refused after it; {len(reset)} reset unread")
    assert exit_code == 0
    assert cut == [], cut  # no request that ran lost its answer
    assert len(held) >= 6  # the long calls at least
    assert all(a.outcome == "ok" or a.status == 503 for a in held), held  # finished or refused
    assert refused and len(reset) <= 4  # refused at once; not queued and reset later
    assert report.holds(), report


FLOOD = 1000
ABUSE_LIMIT = 200  # the gateway's RPCFLEET_MAX_CONNECTIONS in the abuse scenario


def test_http_abuse_under_load_is_answered_quickly_with_json_and_memory_stays_bounded(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    """While four clients keep up the usual load: 1,000 connections at once (over a limit of
    200), and, during that flood and after it, oversized bodies with and without Content-Length,
    bodies that trickle in, bad JSON, bad and huge timeouts. Every request gets its JSON answer
    within 2 s (a trickling body is cut at the 1 s body timeout); during the flood any of them
    may be refused 503 instead; nothing of the load is lost; the gateway's memory stays put."""
    _raise_own_file_limit(FLOOD + 500)
    start_worker("tests.pools.ledger:pool", pool="ledger", processes=2, prefetch=8,
                 test_ledger=tmp_path / "ledger")
    gateway = start_gateway(max_connections=ABUSE_LIMIT, body_timeout=1)
    wait_for_workers(gateway, 2)
    ledger = Ledger(tmp_path / "ledger")
    rss_before = _rss_mib(gateway.proc.pid)
    answers: list[Answer] = []
    target = gateway.url.removeprefix("http://")

    def call(value: str, query: str = "timeout=5") -> Request:
        return Request(f"/v1/rpc/effect?{query}", json.dumps({"value": value, "ms": 1}).encode())

    misbehaving = {
        "oversized": [Request("/v1/rpc/effect", b"x" * (2 << 20)),
                      Request("/v1/jobs/effect", b"x" * (2 << 20))],
        "oversized, chunked": [Request("/v1/rpc/effect", b"x" * (2 << 20), chunked=True),
                               Request("/v1/jobs/effect", b"x" * (2 << 20), chunked=True)],
        "trickled": [Request("/v1/rpc/effect", b"{" + b" " * 99, gap=0.2),
                     Request("/v1/jobs/effect", b"{" + b" " * 99, gap=0.2)],
        "bad JSON": [Request("/v1/rpc/effect", b'{"value": '),
                     Request("/v1/jobs/effect", b"[1, 2")],
        "bad timeout": [call("t", f"timeout={value}") for value in ("-1", "0", "nan", "abc")],
        "huge timeout": [call("t", "timeout=1e300")],  # at most RPCFLEET_RPC_TIMEOUT_MAX
    }

    async def abuse() -> None:
        async def ask(kind: str, request: Request) -> None:
            answers.append(await _exchange(target, kind, request))

        await asyncio.gather(
            *(ask("flood", call(f"flood{n}")) for n in range(FLOOD)),
            *(ask(f"{kind} (in the flood)", request)
              for kind, requests in misbehaving.items() for request in requests))
        await asyncio.gather(*(ask(kind, request)
                               for kind, requests in misbehaving.items() for request in requests))

    abuser = in_background(lambda: asyncio.run(abuse()))
    try:
        load(ledger, gateway.url, 6.0)
    finally:
        abuser.join()
    with httpx.Client(base_url=gateway.url, timeout=15) as http:
        report = account(ledger, http)
        healthy = http.get("/healthz").status_code
    rss_after = _rss_mib(gateway.proc.pid)
    flood = [a for a in answers if a.kind == "flood"]
    seen = {kind: sorted({(a.status, a.code) for a in answers if a.kind == kind})
            for kind in {a.kind for a in answers}}
    slowest = sorted(answers, key=lambda a: -a.seconds)[:3]
    publish("HTTP abuse under load (1,000 connections over a limit of 200)", report,
            f"flood: {sum(a.status == 200 for a in flood)} answered 200, "
            f"{sum(a.code == 'overloaded' for a in flood)} refused 503; slowest answers "
            f"{[(a.kind, round(a.seconds, 2)) for a in slowest]}; gateway RSS "
            f"{rss_before:.0f} -> {rss_after:.0f} MiB")
    expected = {"oversized": (413, "payload_too_large"),
                "oversized, chunked": (413, "payload_too_large"),
                "trickled": (408, "request_timeout"), "bad JSON": (422, "invalid_params"),
                "bad timeout": (422, "invalid_params"), "huge timeout": (200, "")}
    for kind, answer in expected.items():
        assert seen[kind] == [answer], (kind, seen[kind])
        assert set(seen[f"{kind} (in the flood)"]) <= {answer, (503, "overloaded")}, kind
    assert len(flood) == FLOOD and set(seen["flood"]) == {(200, ""), (503, "overloaded")}
    assert slowest[0].seconds < 2.0, slowest
    assert rss_after - rss_before < 64, (rss_before, rss_after)
    assert healthy == 200
    assert report.holds(), report


@dataclass
class Request:
    path: str
    body: bytes
    chunked: bool = False  # sent without Content-Length, in 64 KiB chunks
    gap: float = 0.0  # seconds between bytes: a body that trickles in


@dataclass
class Answer:
    kind: str
    status: int
    code: str  # the error code, "" for a 200
    seconds: float


async def _exchange(target: str, kind: str, request: Request) -> Answer:
    """One POST over its own raw connection (cheap enough that 1,000 at once measure the
    gateway, not the client), its answer read whole and parsed as JSON."""
    host, port = target.split(":")
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(host, int(port))
    framing = "Transfer-Encoding: chunked" if request.chunked else \
        f"Content-Length: {len(request.body)}"
    writer.write(f"POST {request.path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
                 f"application/json\r\n{framing}\r\n\r\n".encode())

    async def send_body() -> None:
        body = request.body
        if request.chunked:
            for at in range(0, len(body), 65536):
                piece = body[at:at + 65536]
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        elif request.gap:
            for at in range(len(body)):
                writer.write(body[at:at + 1])
                await writer.drain()
                await asyncio.sleep(request.gap)  # the client's pace, not a wait for a condition
        else:
            writer.write(body)
        await writer.drain()

    sending = asyncio.ensure_future(send_body())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
        seconds = time.monotonic() - started
        fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line)
        body = json.loads(await reader.readexactly(int(fields[b"content-length"])))
        status = int(head.split(b" ", 2)[1])
        code = "" if status == 200 else body["error"]["code"]
        return Answer(kind, status, code, seconds)
    finally:
        sending.cancel()
        writer.close()


def _raise_own_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def _rss_mib(pid: int) -> float:
    return (rss_bytes(pid) or 0) / 1048576
