"""rpcfleet.client against a real gateway: results, typed errors, jobs, Retry-After retries."""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path

import pytest

from rpcfleet.client import AsyncClient, Client, Job, RpcfleetError
from tests.support.fleet import StartWorker
from tests.support.gateway import Gateway, StartGateway, wait_for_workers
from tests.support.waiting import wait_for


def test_calls_return_results_and_errors_carry_their_code(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker()
    gateway = start_gateway(api_keys="k1")
    with Client(gateway.url, api_key="k1") as fleet:
        assert fleet.call("greet", {"name": "ada", "times": 2}, timeout=5) == "hello ada hello ada"
        with pytest.raises(RpcfleetError) as unknown:
            fleet.call("ghost")
        assert (unknown.value.status, unknown.value.code) == (404, "unknown_method")
        with pytest.raises(RpcfleetError) as bad:
            fleet.call("greet", {"times": 2})
        assert (bad.value.status, bad.value.code) == (422, "invalid_params")
        assert bad.value.call_id and not bad.value.retryable

        job = fleet.submit("echo", {"x": 1}, idempotency_key="same")
        assert fleet.submit("echo", {"x": 1}, idempotency_key="same").id == job.id
        done = fleet.wait(job.id, timeout=30)
        assert (done.status, done.result) == ("succeeded", {"x": 1})
        assert done.status_url and done.status_url.endswith(f"/v1/jobs/{job.id}")
        with pytest.raises(RpcfleetError) as finished:
            fleet.cancel(job.id)
        assert finished.value.code == "conflict"
    with Client(gateway.url) as stranger, pytest.raises(RpcfleetError) as denied:
        stranger.call("echo")
    assert denied.value.code == "unauthorized"


def test_retries_wait_out_no_workers_as_retry_after_says(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    first = start_worker()
    gateway = start_gateway(retry_after=1)
    wait_for_workers(gateway, 1)
    first.signal(signal.SIGTERM)
    first.wait(timeout=30)
    with Client(gateway.url, retries=0) as fleet:
        def refused() -> RpcfleetError | None:
            try:
                fleet.call("echo", timeout=0.2)
            except RpcfleetError as exc:
                return exc if exc.code == "no_workers" else None
            return None

        error = wait_for(refused, timeout=30, what="no_workers once the pool's beats stop")
        assert error.retryable and error.retry_after == 1.0
        refusals = _no_workers_count(fleet)
        replacement = threading.Thread(target=start_worker)
        replacement.start()
        try:
            with Client(gateway.url, retries=30) as patient:
                assert patient.call("echo", {"back": True}) == {"back": True}
        finally:
            replacement.join(timeout=60)
        assert _no_workers_count(fleet) > refusals  # it was refused, waited and tried again


def _no_workers_count(fleet: Client) -> float:
    for line in fleet.http.get("/metrics").text.splitlines():
        if line.startswith('rpcfleet_calls_total{code="no_workers",method="echo"}'):
            return float(line.split()[-1])
    return 0.0


def test_the_async_client_calls_and_waits_for_jobs(gateway: Gateway) -> None:

    async def scenario() -> tuple[object, Job]:
        async with AsyncClient(gateway.url) as fleet:
            results = await asyncio.gather(*(fleet.call("echo", {"i": i}) for i in range(20)))
            job = await fleet.submit("echo", {"y": 2})
            return results, await fleet.wait(job.id, timeout=30)

    results, job = asyncio.run(scenario())
    assert results == [{"i": i} for i in range(20)]
    assert (job.status, job.result) == ("succeeded", {"y": 2})


def test_a_job_is_followed_event_by_event_until_it_ends(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    start_worker()
    gateway = start_gateway(api_keys="k1")
    release = tmp_path / "release"
    with Client(gateway.url, api_key="k1") as fleet:
        job = fleet.submit("staged", {"release": str(release)})
        seen = []
        for update in fleet.events(job.id):
            seen.append((update.seq, update.event, update.job.progress and
                         update.job.progress.fraction))
            if update.event == "progress" and not release.exists():
                release.touch()  # the handler finishes once it sees this
        assert seen == [(1, "queued", None), (2, "running", None), (3, "progress", 0.5),
                        (4, "progress", 1.0), (5, "succeeded", 1.0)]
        assert [u.seq for u in fleet.events(job.id, after=3)] == [4, 5]  # resumed, not repeated
        assert list(fleet.events(job.id, after=5)) == []  # resumed at its end: nothing more
        with pytest.raises(RpcfleetError) as unknown:
            next(iter(fleet.events("no-such-job")))
        assert unknown.value.code == "not_found"
    with Client(gateway.url, api_key="wrong") as stranger, pytest.raises(RpcfleetError) as denied:
        next(iter(stranger.events(job.id)))
    assert denied.value.code == "unauthorized"


def test_the_async_client_follows_a_job_with_async_for(gateway: Gateway) -> None:

    async def scenario() -> list[str]:
        async with AsyncClient(gateway.url) as fleet:
            job = await fleet.submit("echo", {"z": 3})
            seen = [update.event async for update in fleet.events(job.id)]
            return seen + [update.event async for update in fleet.events(job.id, after=3)]

    assert asyncio.run(scenario()) == ["queued", "running", "succeeded"]  # and none after 3
