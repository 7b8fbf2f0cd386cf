"""Gateways on several hosts (SPEC 1.1): each SQLite store has its own reply and dead-letter
queues, so a job's outcome always reaches a gateway that can record it."""

from __future__ import annotations

from pathlib import Path

from protocol import names
from tests.support.fleet import StartWorker
from tests.support.gateway import StartGateway, wait_for_workers
from tests.support.jobs import occupy, submit, until
from tests.support.rabbit import Vhost


def test_two_hosts_with_their_own_stores_each_record_all_of_their_jobs(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    start_worker(processes=2, prefetch=4)
    hosts = [start_gateway(state_dir=tmp_path / name) for name in ("host-a", "host-b")]
    for gateway in hosts:
        wait_for_workers(gateway, 2)
    submitted: list[list[str]] = []
    with hosts[0].client() as a, hosts[1].client() as b:
        for http, name in ((a, "a"), (b, "b")):
            submitted.append([submit(http, "echo", {"host": name, "n": n}).json()["id"]
                              for n in range(15)])
        done = [[until(http, job_id, "succeeded", "failed") for job_id in ids]
                for http, ids in ((a, submitted[0]), (b, submitted[1]))]
        elsewhere = b.get(f"/v1/jobs/{submitted[0][0]}")
    for host, jobs in zip("ab", done, strict=True):
        assert [job["status"] for job in jobs] == ["succeeded"] * 15
        assert {job["result"]["host"] for job in jobs} == {host}
    assert elsewhere.status_code == 404  # each store holds its own jobs
    queues = vhost.list_queues("messages")
    own = [name for name in queues if name.startswith(names.REPLIES_QUEUE + ".")]
    assert len(own) == 2 and all(queues[name] == ["0"] for name in own)


def test_a_job_the_broker_dead_letters_is_recorded_by_the_host_that_took_it(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    start_worker(processes=1)
    a = start_gateway(state_dir=tmp_path / "host-a")
    b = start_gateway(state_dir=tmp_path / "host-b")
    for gateway in (a, b):
        wait_for_workers(gateway, 1)
    with a.client() as http_a, b.client() as http_b:
        busy = occupy(http_a, tmp_path / "busy", seconds=3)
        # Waits at the head of the queue behind the busy job until the broker expires it.
        late = submit(http_b, "echo", {"late": True}, timeout=0.5).json()["id"]
        expired = until(http_b, late, "expired", "failed", "succeeded", timeout=30)
        until(http_a, busy, "succeeded")
    assert expired["status"] == "expired"


def test_with_the_shared_postgresql_store_any_gateway_sees_follows_and_cancels_any_job(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path, pg_dsn: str
) -> None:
    start_worker(processes=1)
    a = start_gateway(state_dir=tmp_path / "host-a", job_store=pg_dsn)
    b = start_gateway(state_dir=tmp_path / "host-b", job_store=pg_dsn)
    for gateway in (a, b):
        wait_for_workers(gateway, 1)
    with a.client() as http_a, b.client() as http_b:
        ids = [submit(http_a, "echo", {"n": n}).json()["id"] for n in range(10)]
        done = [until(http_b, job_id, "succeeded") for job_id in ids]  # read on the other host
        busy = occupy(http_a, tmp_path / "busy", seconds=2)
        queued = submit(http_a, "echo", {"queued": True}).json()["id"]
        cancelled = http_b.delete(f"/v1/jobs/{queued}")
        with http_b.stream("GET", f"/v1/jobs/{busy}/events") as stream:
            events = [line for line in stream.iter_lines() if line.startswith("event:")]
        final = until(http_a, queued, "cancelled")
    assert [job["result"] for job in done] == [{"n": n} for n in range(10)]
    assert cancelled.status_code == 202 and final["status"] == "cancelled"
    assert events[-1] == "event: succeeded"
