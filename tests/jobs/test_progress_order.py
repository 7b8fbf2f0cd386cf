"""Every progress event is recorded once, in the order the worker sent it, however many gateway
processes hear it (issue 22, #8).

Each gateway process hears every worker event. Deduplication used to skip only the current
value, so a process that lagged wrote an older value after a newer one: followers saw p1, p2, p1,
p2 (24 progress events for 20 steps, 0.45 after 0.65, with 2 processes). The worker now numbers
a run's progress events and the reply says how many it sent: a store records event n only after
n - 1, once, and the job's end only after them (SPEC 1.1: none coalesced)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.fleet import StartWorker
from tests.support.gateway import StartGateway, wait_for_workers
from tests.support.jobs import submit, until

STEPS = 20


def _events(http: Any, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        name = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    return events


@pytest.mark.slow  # ~20 s each
@pytest.mark.parametrize("method", ["steps", "steps_async"])
def test_progress_from_a_fast_handler_is_recorded_once_each_in_order_by_two_processes(
    start_worker: StartWorker, start_gateway: StartGateway, method: str
) -> None:
    start_worker()
    gateway = start_gateway(workers=2)
    wait_for_workers(gateway, 1)
    with gateway.client() as http:
        jobs = [submit(http, method, {"steps": STEPS}).json()["id"] for _ in range(3)]
        for job_id in jobs:
            until(http, job_id, "succeeded")
        for job_id in jobs:
            events = _events(http, job_id)
            names = [name for name, _ in events]
            fractions = [event["progress"]["fraction"] for name, event in events
                         if name == "progress"]
            assert fractions == [step / STEPS for step in range(1, STEPS + 1)], (job_id, names)
            assert names[-1] == "succeeded" and names.count("succeeded") == 1
            assert names.index("succeeded") > max(i for i, n in enumerate(names)
                                                  if n == "progress")
