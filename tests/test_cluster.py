"""`rpcfleet broker --nodes 3`: a local cluster on loopback, and a fleet on quorum queues that
keeps serving and loses no job when the node it uses is killed (SPEC 1.1). Slow (about a minute):
behind the `slow` marker, which CI runs as its own step."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from rpcfleet.broker import LocalBroker, LocalCluster, free_port_run
from tests.support.fleet import worker_factory
from tests.support.gateway import gateway_factory, wait_for_workers
from tests.support.jobs import submit, until
from tests.support.processes import REPO, RPCFLEET
from tests.support.waiting import wait_for


@pytest.mark.slow
def test_a_three_node_cluster_keeps_serving_and_loses_no_job_when_a_node_dies(
    tmp_path: Path
) -> None:
    base, folder = free_port_run(3), tmp_path / "cluster"
    cli = [*RPCFLEET, "broker", "--nodes", "3", "--port", str(base), "--dir", str(folder)]
    started = subprocess.run(cli, cwd=REPO, capture_output=True, text=True, timeout=240)
    cluster = LocalCluster(directory=folder, port=base, count=3)
    url = cluster.amqp_url
    workers = worker_factory(url, tmp_path)  # lazy: nothing starts before next()
    gateways = gateway_factory(url, tmp_path)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "cluster of 3 running nodes" in started.stdout
        assert len(cluster.running_nodes()) == 3
        worker = next(workers)(processes=2, beat_interval=1, queue_type="quorum", wait=False)
        gateway = next(gateways)(queue_type="quorum")
        wait_for_workers(gateway, 2, timeout=60)
        with gateway.client() as http:
            ids = [submit(http, "sleep", {"seconds": 0.3}).json()["id"] for _ in range(20)]
            first: LocalBroker = cluster.nodes[0]  # where everyone connected first
            os.kill(int(first.pid_file.read_text().strip()), signal.SIGKILL)

            last: list[str] = ["no answer yet"]

            def answered() -> bool:
                try:
                    response = http.post("/v1/rpc/echo?timeout=3", json={})
                except httpx.HTTPError as exc:
                    last[0] = repr(exc)
                    return False
                last[0] = f"{response.status_code} {response.text[:300]}"
                return response.status_code == 200

            def what_happened() -> str:  # for a failure: the last answer, and both sides' logs
                return (f"last answer: {last[0]}\nnodes running: {cluster.running_nodes()}\n"
                        f"gateway log:\n{gateway.proc.output()[-3000:]}\n"
                        f"worker log:\n{worker.output()[-3000:]}")

            wait_for(answered, timeout=90, interval=0.5, what="calls through the other nodes",
                     detail=what_happened)
            jobs = [until(http, job_id, "succeeded", "failed", timeout=90) for job_id in ids]
        assert [job["status"] for job in jobs] == ["succeeded"] * 20  # none lost with the node
    finally:
        for factory in (gateways, workers):
            next(factory, None)
        cluster.stop()
