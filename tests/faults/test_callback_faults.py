"""Callback receivers that are down, hang, trickle their answer or redirect inward, while the
usual load runs: every job's callback ends delivered (or, for a redirect, failed at once, its
Location never visited), each delivery carries one webhook-id and one body however often it is
retried, and none is delivered again once acknowledged. Slow: `./run test -m slow`."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from rpcfleet.broker import free_port
from tests.faults.stage import in_background
from tests.support.faults import Ledger, account, load, publish
from tests.support.fleet import StartWorker
from tests.support.gateway import StartGateway, wait_for_workers
from tests.support.jobs import SECRET
from tests.support.receiver import ANSWER, HANG, TRICKLE, Received, Receiver, serving
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

PHASE_S = 3.0  # how long the receiver stays down, then hangs, then trickles
ENDED = ("delivered", "failed")


def test_callback_receivers_down_hanging_trickling_or_redirecting_inward_under_load(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    start_worker("tests.pools.ledger:pool", pool="ledger", processes=2, prefetch=2,
                 test_ledger=tmp_path / "ledger")
    gateway = start_gateway(callback_secret=SECRET, callback_allow_hosts="127.0.0.1",
                            callback_attempt_timeout=1, callback_backoff=0.2,
                            callback_backoff_max=1, callback_window=120)
    wait_for_workers(gateway, 2)
    ledger = Ledger(tmp_path / "ledger")
    port = free_port()  # nobody listens there yet: the receiver is down
    phases: dict[str, float] = {}
    with ExitStack() as stack:
        internal = stack.enter_context(serving())  # what a redirect points at: never visited
        redirector = stack.enter_context(serving())
        redirector.statuses, redirector.redirect_to = [302] * 1000, internal.url + "/metadata"
        receivers: list[Receiver] = []

        def receiver_phases() -> None:
            time.sleep(PHASE_S)  # the phases' lengths, not waits for conditions
            receiver = stack.enter_context(serving(port))
            receivers.append(receiver)
            receiver.mode, receiver.hang_s = HANG, 30
            phases["hang"] = time.monotonic()
            time.sleep(PHASE_S)
            receiver.mode = TRICKLE
            phases["trickle"] = time.monotonic()
            time.sleep(PHASE_S)
            receiver.mode = ANSWER
            phases["answer"] = time.monotonic()

        def with_callbacks() -> None:
            with httpx.Client(base_url=gateway.url, timeout=15) as http:
                for n in range(int(3 * PHASE_S / 0.1)):
                    target = redirector.url if n % 10 == 9 else f"http://127.0.0.1:{port}/hook"
                    ledger.submit(http, ms=5, callback_url=target)
                    time.sleep(0.1)  # the submitter's pace

        behaviour = in_background(receiver_phases)
        submitter = in_background(with_callbacks)
        try:
            load(ledger, gateway.url, 3 * PHASE_S + 2)
        finally:
            for thread in (behaviour, submitter):
                thread.join()
        receiver = receivers[0]
        with httpx.Client(base_url=gateway.url, timeout=15) as http:
            report = account(ledger, http)
            hooked = [a.job_id or "" for a in ledger.attempts if a.outcome == "ok" and a.callback]
            jobs: dict[str, dict[str, Any]] = {}

            def callbacks_ended() -> bool:
                for job_id in hooked:
                    if jobs.get(job_id, {}).get("callback", {}).get("state") \
                            not in ENDED:
                        jobs[job_id] = http.get(f"/v1/jobs/{job_id}").json()
                return all(jobs[j]["callback"]["state"] in ENDED for j in hooked)

            wait_for(callbacks_ended, timeout=60, interval=0.5, what="every callback to end",
                     detail=lambda: str([(j, jobs[j]["callback"]) for j in hooked
                                         if jobs[j]["callback"]["state"] not in ENDED][:5]))
            all_delivered_at = time.monotonic()
        received = list(receiver.requests)
        visited_inside = list(internal.requests)

    by_job: dict[str, list[Received]] = defaultdict(list)
    for request in received:
        by_job[request.headers["x-rpcfleet-job-id"]].append(request)
    to_redirector = {r.headers["x-rpcfleet-job-id"] for r in redirector.requests}
    problems = []
    for job_id in hooked:
        job = jobs[job_id]
        callback = job["callback"]
        if job_id in to_redirector:
            if (callback["state"], callback["attempts"]) != ("failed", 1) or \
                    "redirect" not in (callback["last_error"] or ""):
                problems.append(("redirect", job_id, callback))
            continue
        deliveries = by_job[job_id]
        bodies = {json.dumps({k: v for k, v in json.loads(r.body).items() if k != "callback"},
                             sort_keys=True) for r in deliveries}
        ids = {r.headers["webhook-id"] for r in deliveries}
        acknowledged = [r for r in deliveries if r.mode == ANSWER and r.status == 204]
        if callback["state"] != "delivered" or len(acknowledged) != 1 or len(ids) != 1 or \
                len(bodies) != 1 or json.loads(bodies.pop())["status"] != job["status"]:
            problems.append(("delivery", job_id, callback, len(acknowledged), len(ids)))
    modes = {mode: sum(r.mode == mode for r in received) for mode in (HANG, TRICKLE, ANSWER)}
    attempts = sorted(jobs[j]["callback"]["attempts"] for j in hooked)
    publish("callback receivers down / hanging / trickling / redirecting, under load", report,
            f"{len(hooked)} jobs with callbacks ({len(to_redirector)} redirected inward); "
            f"attempts seen by the receiver: {modes['hang']} hung, {modes['trickle']} trickled, "
            f"{modes['answer']} answered; attempts per job median {attempts[len(attempts) // 2]},"
            f" max {attempts[-1]}; all delivered {all_delivered_at - phases['answer']:.1f} s "
            "after the receiver recovered")
    assert problems == [], problems[:5]
    assert visited_inside == []  # no redirect followed
    assert modes[HANG] and modes[TRICKLE] and to_redirector  # each misbehaviour was met
    assert report.holds(), report

