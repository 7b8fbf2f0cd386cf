"""Gateways killed or stopped under load: workers unharmed, every accepted job ends, every
answer whole. Slow: `./run test -m slow`, run by CI as its own step."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.faults.stage import (
    time_to_answer,
)
from tests.support.faults import Ledger, account, load, publish
from tests.support.fleet import StartWorker
from tests.support.gateway import StartGateway, wait_for_workers

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
    assert report.lost == [] and report.duplicated == [] and report.wrong_answers == 0, report


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
            ledger.call(http, ms=1500)

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
    assert report.lost == [] and report.duplicated == [] and report.wrong_answers == 0, report
