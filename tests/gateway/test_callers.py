"""What a sync caller brings and does beyond its params: its trace context travels to the
handler; hanging up leaves no queued work behind."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from tests.support.gateway import Gateway, wait_for_workers
from tests.support.jobs import submit, until
from tests.support.waiting import wait_for


def test_a_queued_call_whose_caller_hangs_up_is_skipped_and_a_running_one_finishes(
    gateway: Gateway, tmp_path: Path
) -> None:
    wait_for_workers(gateway, 1)
    busy, skipped, running = tmp_path / "busy", tmp_path / "skipped", tmp_path / "running"

    def hang_up_after(seconds: float, params: dict[str, object]) -> None:
        with httpx.Client(base_url=gateway.url, timeout=seconds) as impatient:
            try:
                impatient.post("/v1/rpc/sleep", json=params)
            except httpx.TimeoutException:
                return  # the client closes the connection: the gateway sees it hang up
        raise AssertionError("the call answered before its caller hung up")

    with gateway.client() as http:
        before = http.post("/v1/rpc/whoami", json={}).json()["result"]["pid"]
        first: list[httpx.Response] = []
        occupier = threading.Thread(target=lambda: first.append(http.post(
            "/v1/rpc/sleep", json={"seconds": 2, "marker": str(busy)})))
        occupier.start()
        wait_for(busy.exists, what="the only consumer to be busy")
        hang_up_after(0.5, {"seconds": 0, "marker": str(skipped)})  # queued behind it
        occupier.join(timeout=30)
        assert first[0].status_code == 200
        # Answered in queue order: once this returns, the abandoned call has been taken.
        assert http.post("/v1/rpc/whoami", json={}).json()["result"]["pid"] == before
        assert not skipped.exists()  # it never ran

        hang_up_after(0.3, {"seconds": 1, "marker": str(running)})  # hangs up while it runs
        assert running.exists()
        # It ran to the end on the same consumer: not stopped, no replacement.
        assert http.post("/v1/rpc/whoami", json={}).json()["result"]["pid"] == before
        metrics = http.get("/metrics").text
    assert 'rpcfleet_calls_total{code="client_closed",method="sleep"} 2.0' in metrics
    assert "rpcfleet_late_replies_total 0.0" in metrics  # their answers were expected


def test_the_callers_trace_context_reaches_the_handler_of_calls_and_jobs(gateway: Gateway) -> None:
    context = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
               "tracestate": "rojo=00f067aa0ba902b7"}
    with gateway.client() as http:
        assert http.post("/v1/rpc/trace", json={}, headers=context).json()["result"] == context
        assert http.post("/v1/rpc/trace", json={}).json()["result"] == {}
        job_id = submit(http, "trace", {}, headers=context).json()["id"]
        assert until(http, job_id, "succeeded")["result"] == context
