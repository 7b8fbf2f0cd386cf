"""Jepsen-style accounting for the fault suite (issue: reliability, shown).

Every request is recorded as **ok** (200 with a result, or 202), **fail** (a definite error: a
4xx, a 503 without a job id, or a refused connection: not enqueued) or **indeterminate** (a 504, a
reset connection, a response cut short, or a 503 carrying a job id: outcome unknown; `error` names
the exception when there was no answer). After the scenario drains, `Report` counts:
- lost: accepted jobs that did not end `succeeded` with their effect committed (or never ended);
- duplicated effects: a job whose observable outcome changed once terminal, or whose answer
  differs from its committed effect;
- re-executions: runs beyond the first of a job (at least once allows them);
- recovered: indeterminate requests whose job completed anyway.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.waiting import wait_for

OK, FAIL, UNKNOWN = "ok", "fail", "indeterminate"
# A submission waits at most for the broker's confirm: the longest publish timeout a scenario
# configures (the default, 5 s).
SUBMIT_DEADLINE_S = 5.0


@dataclass
class Attempt:
    kind: str  # "job" or "call"
    outcome: str
    job_id: str | None
    value: str
    seconds: float
    at: float  # monotonic, when it was answered
    status: int | None = None
    error: str | None = None  # the exception that ended it without an answer
    callback: str | None = None  # a job's callback_url
    deadline: float = 0.0  # seconds the request may take: answered after deadline + 1 s, it hung
    code: str | None = None  # an error answer's code (SPEC: errors)


@dataclass
class Ledger:
    folder: Path
    attempts: list[Attempt] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _values: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        (self.folder / "effects").mkdir(parents=True, exist_ok=True)
        (self.folder / "runs").touch()

    def _record(self, attempt: Attempt) -> None:
        with self._lock:
            self.attempts.append(attempt)

    def submit(self, http: httpx.Client, ms: int = 50, callback_url: str | None = None) -> None:
        value = f"v{next(self._values)}"
        body: dict[str, Any] = {"params": {"value": value, "ms": ms}}
        if callback_url:
            body["callback_url"] = callback_url
        started = time.monotonic()
        try:
            response = http.post("/v1/jobs/effect", json=body)
        except httpx.HTTPError as exc:
            self._unanswered("job", value, started, exc, SUBMIT_DEADLINE_S)
            return
        self._record(Attempt("job", *_classify(response), value,
                             time.monotonic() - started, time.monotonic(), response.status_code,
                             callback=callback_url, deadline=SUBMIT_DEADLINE_S,
                             code=_error_code(response)))

    def call(self, http: httpx.Client, ms: int = 20, timeout: float = 5) -> None:
        value = f"c{next(self._values)}"
        started = time.monotonic()
        try:
            response = http.post(f"/v1/rpc/effect?timeout={timeout}",
                                 json={"value": value, "ms": ms}, timeout=timeout + 5)
        except httpx.HTTPError as exc:
            self._unanswered("call", value, started, exc, timeout)
            return
        outcome, call_id = _classify(response)
        if outcome == OK and response.json()["result"]["value"] != value:
            outcome = "wrong answer"
        self._record(Attempt("call", outcome, call_id, value, time.monotonic() - started,
                             time.monotonic(), response.status_code, deadline=timeout,
                             code=_error_code(response)))

    def _unanswered(self, kind: str, value: str, started: float, exc: httpx.HTTPError,
                    deadline: float) -> None:
        # Refused before anything was sent: definitely not enqueued. Anything later (a reset, a
        # response cut short, a read timeout): the outcome is unknown.
        outcome = FAIL if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout) else UNKNOWN
        now = time.monotonic()
        self._record(Attempt(kind, outcome, None, value, now - started, now,
                             error=f"{type(exc).__name__}: {exc}", deadline=deadline))

    def effects(self) -> dict[str, str]:
        return {path.name: path.read_text() for path in (self.folder / "effects").iterdir()
                if not path.name.startswith(".")}  # a killed run's draft is no effect

    def runs(self) -> Counter[str]:
        return Counter(line.split()[0] for line in (self.folder / "runs").read_text().split("\n")
                       if line.strip())


def _error_code(response: httpx.Response) -> str | None:
    if response.status_code < 400:
        return None
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return f"not JSON ({response.headers.get('content-type')})"


def _classify(response: httpx.Response) -> tuple[str, str | None]:
    status = response.status_code
    body: dict[str, Any] = {}
    try:
        body = response.json()
    except ValueError:
        pass
    if status in (200, 202):
        return OK, str(body.get("id"))
    error_id = (body.get("error") or {}).get("id")
    if status == 504 or (status == 503 and error_id):
        return UNKNOWN, error_id
    return FAIL, None


TERMINAL_STATES = ("succeeded", "failed", "cancelled", "expired")
JOB_PACE_S = 0.02  # a job client submits at most 50 jobs/s: the workers can drain them after


def load(ledger: Ledger, url: str, seconds: float, threads: int = 4) -> None:
    """Sync calls and (paced) jobs from `threads` clients for `seconds`."""
    stop = time.monotonic() + seconds

    def client(number: int) -> None:
        with httpx.Client(base_url=url, timeout=15) as http:
            while time.monotonic() < stop:
                if number % 2:
                    ledger.call(http)
                else:
                    ledger.submit(http, ms=5)
                    time.sleep(JOB_PACE_S)  # the load's rate, not a wait for a condition

    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


@dataclass
class Report:
    accepted: int
    lost: list[str]
    duplicated: list[str]
    failed_jobs: int
    reexecutions: int
    recovered: int
    indeterminate: int
    definite_failures: int
    wrong_answers: int
    p50_ms: float
    p99_ms: float
    hung: list[str] = field(default_factory=list)  # answered past their deadline + 1 s

    def holds(self) -> bool:
        """What every scenario must show: nothing lost, no effect duplicated, no wrong answer,
        no request answered later than its deadline + 1 s."""
        return not (self.lost or self.duplicated or self.wrong_answers or self.hung)

    def __str__(self) -> str:
        return (f"accepted {self.accepted}, lost {len(self.lost)}, duplicated effects "
                f"{len(self.duplicated)}, failed jobs {self.failed_jobs}, re-executions "
                f"{self.reexecutions}, indeterminate {self.indeterminate} (recovered "
                f"{self.recovered}), definite failures {self.definite_failures}, wrong answers "
                f"{self.wrong_answers}, hung {len(self.hung)}, p50 {self.p50_ms:.0f} ms, "
                f"p99 {self.p99_ms:.0f} ms")


def account(ledger: Ledger, http: httpx.Client, drain_seconds: float = 90) -> Report:
    """Wait for every accepted job to end, then count. An indeterminate job (503 with its id)
    whose request never reached the broker stays queued until the gateway settles it (failed
    and cancelled, minutes later): it is counted recovered only if it ran."""
    jobs = [a for a in ledger.attempts if a.kind == "job" and a.job_id]
    accepted = [a for a in jobs if a.outcome == OK]

    def final(job_id: str) -> dict[str, Any] | None:
        response = http.get(f"/v1/jobs/{job_id}")
        return response.json() if response.status_code == 200 else None

    def all_ended() -> bool:
        return all((job := final(a.job_id or "")) is None or job["status"] in TERMINAL_STATES
                   for a in accepted)

    def unfinished() -> str:
        jobs_left = [(a.job_id, (final(a.job_id or "") or {}).get("status")) for a in accepted]
        return f"not ended: {[j for j in jobs_left if j[1] not in TERMINAL_STATES][:10]}"

    wait_for(all_ended, timeout=drain_seconds, interval=0.5, what="every accepted job to end",
             detail=unfinished)
    # First the jobs, then the effects (a job recorded succeeded committed its effect before),
    # then the jobs again: a terminal state never changes. An indeterminate job (503 with its id)
    # the broker did hold may still be queued or running now: only terminal states compare.
    first = {a.job_id: final(a.job_id or "") for a in jobs}
    effects, runs = ledger.effects(), ledger.runs()
    again = {a.job_id: final(a.job_id or "") for a in jobs}
    lost, duplicated, failed_jobs, recovered = [], [], 0, 0
    for attempt in jobs:
        job_id = attempt.job_id or ""
        job = first[job_id]
        if job is not None and job["status"] in TERMINAL_STATES and job != again[job_id]:
            duplicated.append(job_id)
        if job is not None and job["status"] == "succeeded" and \
                job["result"]["value"] != effects.get(job_id):
            duplicated.append(job_id)  # its answer and its committed effect disagree
        if attempt.outcome == OK:
            if job is None or (job["status"] == "succeeded" and job_id not in effects):
                lost.append(job_id)
            elif job["status"] != "succeeded":
                failed_jobs += 1
        elif attempt.outcome == UNKNOWN and job_id in effects:
            recovered += 1
    latencies = sorted(a.seconds * 1000 for a in ledger.attempts if a.outcome == OK)
    return Report(
        accepted=sum(1 for a in jobs if a.outcome == OK), lost=lost, duplicated=duplicated,
        failed_jobs=failed_jobs, reexecutions=sum(n - 1 for n in runs.values() if n > 1),
        recovered=recovered,
        indeterminate=sum(1 for a in ledger.attempts if a.outcome == UNKNOWN),
        definite_failures=sum(1 for a in ledger.attempts if a.outcome == FAIL),
        wrong_answers=sum(1 for a in ledger.attempts if a.outcome == "wrong answer"),
        p50_ms=statistics.median(latencies) if latencies else 0.0,
        p99_ms=latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
        hung=[f"{a.kind} {a.value}: {a.seconds:.1f} s" for a in ledger.attempts
              if a.seconds > a.deadline + 1])


REPORT_ENV = "FAULTS_REPORT_FILE"  # the scenarios append their figures here (bench/faults)


def publish(scenario: str, report: Report, note: str = "") -> None:
    """Print a scenario's figures, and append them as a JSON line to $FAULTS_REPORT_FILE."""
    print(f"\n{scenario}: {report}" + (f"; {note}" if note else ""))
    target = os.environ.get(REPORT_ENV)
    if target:
        row = {"scenario": scenario, "note": note, **dataclasses.asdict(report),
               "lost": len(report.lost), "duplicated": len(report.duplicated),
               "hung": len(report.hung)}
        with open(target, "a") as out:
            out.write(json.dumps(row) + "\n")
