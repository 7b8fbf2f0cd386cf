"""A 3-node cluster on quorum queues against one node on classic queues, and the failover gap.

    ./run bench cluster [--seconds 10] [--repeats 5] [--skip-throughput] [--skip-failover]

Throughput: the example pool (`examples.vectors`, 1 consumer) behind a gateway of 2 processes;
wrk at 16 connections for `--seconds` on `POST /v1/rpc/echo` (sync calls/s, p99) and on
`POST /v1/jobs/echo` (jobs accepted/s: confirmed persistent publishes), on one node with classic
queues, then on `rpcfleet broker --nodes 3` with quorum queues (RPCFLEET_AMQP_URL lists the
three nodes). Everything shares this machine's cores: the cluster's three nodes compete with the
gateway and the worker, which a real deployment would not.

Failover: `tests/cluster/failover.py`, repeated: under mixed load, SIGKILL the pool queue's
leader, a follower, the clients' node, and freeze the clients' node (SIGSTOP: silent); report the
gap (kill to the first sync call sent after it answered 200) as median and maximum per case, and
what was lost or duplicated in all of them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench.harness import RPCFLEET, env_with, post_script, private_broker, process
from bench.rpc import wait_http, wrk
from rpcfleet.broker import free_port, free_port_run
from rpcfleet.cluster import LocalCluster

CONCURRENCY = 16


@contextmanager
def _fleet(amqp_url: str, queue_type: str, folder: Path) -> Iterator[str]:
    folder.mkdir(parents=True, exist_ok=True)
    env = env_with(RPCFLEET_AMQP_URL=amqp_url, RPCFLEET_QUEUE_TYPE=queue_type,
                   RPCFLEET_STATE_DIR=folder / "state", RPCFLEET_EXAMPLE_CACHE_MB=16)
    port = free_port()
    with ExitStack() as stack:
        stack.enter_context(process([*RPCFLEET, "worker", "examples.vectors:pool",
                                     "--processes", "1"], env, folder / "worker.log"))
        stack.enter_context(process([*RPCFLEET, "gateway", "--port", str(port), "--workers",
                                     "2"], env, folder / "gateway.log"))
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/v1/rpc/echo", "{}")
        yield url


def _measure(url: str, seconds: int, folder: Path) -> dict[str, float]:
    calls = post_script(folder / "call.lua", json.dumps({"query": "x" * 150}))
    jobs = post_script(folder / "job.lua", json.dumps({"params": {"query": "x" * 150}}))
    call_rps, _, call_p99, call_errors, _ = wrk(f"{url}/v1/rpc/echo", CONCURRENCY, seconds, calls)
    job_rps, _, job_p99, job_errors, _ = wrk(f"{url}/v1/jobs/echo", CONCURRENCY, seconds, jobs)
    return {"calls/s": call_rps, "call p99 ms": call_p99, "call errors": call_errors,
            "jobs/s": job_rps, "job p99 ms": job_p99, "job errors": job_errors}


def throughput(seconds: int) -> None:
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="rpcfleet-bench-") as tmp:
        folder = Path(tmp)
        print("one node, classic queues ...", flush=True)
        with private_broker() as node, _fleet(node.amqp_url, "classic", folder / "one") as url:
            rows.append(("1 node, classic", _measure(url, seconds, folder)))
        print("3-node cluster, quorum queues ...", flush=True)
        cluster = LocalCluster(directory=folder / "cluster", port=free_port_run(3), count=3)
        cluster.start()
        try:
            with _fleet(cluster.amqp_url, "quorum", folder / "three") as url:
                rows.append(("3 nodes, quorum", _measure(url, seconds, folder)))
        finally:
            cluster.stop()
    columns = list(rows[0][1])
    print(f"\nthroughput at c={CONCURRENCY}, {seconds} s each (wrk; 2 gateway processes, "
          "1 consumer; every process on this machine's 2 cores)")
    print("| broker | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, row in rows:
        print(f"| {name} | " + " | ".join(f"{row[c]:.0f}" for c in columns) + " |")


def failover(repeats: int) -> None:
    from tests.cluster.failover import ROLES, SILENT, Failover, kill_under_load, quorum_fleet

    seen: dict[str, list[Failover]] = {role: [] for role in (*ROLES, SILENT)}
    with tempfile.TemporaryDirectory(prefix="rpcfleet-bench-") as tmp:
        folder = Path(tmp)
        cluster = LocalCluster(directory=folder / "cluster", port=free_port_run(3), count=3)
        cluster.start()
        try:
            with quorum_fleet(cluster, folder) as fleet:
                print(f"clients: {_clients(cluster)}", flush=True)
                for repeat in range(repeats):
                    for role in seen:
                        result = kill_under_load(fleet, role)
                        seen[role].append(result)
                        print(f"  {repeat + 1}/{repeats} {result.role} ({result.killed}): gap "
                              f"{result.gap_s:.2f} s, lost {len(result.report.lost)}, "
                              f"duplicated {len(result.report.duplicated)}", flush=True)
        finally:
            cluster.stop()
    print(f"\nfailover gap over {repeats} repeats (kill to the first sync call sent after it "
          "answered 200)")
    print("| node killed | gap median | gap max | accepted jobs | lost | duplicated effects | "
          "hung |")
    print("|---|---|---|---|---|---|---|")
    for role, results in seen.items():
        gaps = [r.gap_s for r in results]
        print(f"| {role} | {statistics.median(gaps):.2f} s | {max(gaps):.2f} s | "
              f"{sum(r.report.accepted for r in results)} | "
              f"{sum(len(r.report.lost) for r in results)} | "
              f"{sum(len(r.report.duplicated) for r in results)} | "
              f"{sum(len(r.report.hung) for r in results)} |")


def _clients(cluster: LocalCluster) -> str:
    """Connections and their channels per node: a gateway of 2 processes, 2 consumers."""
    rows = json.loads(cluster.nodes[0].ctl("list_connections", "port", "channels",
                                           "client_properties", "--formatter", "json"))
    seen: dict[str, list[int]] = {}
    for row in rows:
        name = _connection_name(row["client_properties"]).split(" ")[0]
        counts = seen.setdefault(f"{name} on :{row['port']}", [0, 0])
        counts[0] += 1
        counts[1] += int(row["channels"])
    return "; ".join(f"{key}: {c} connections, {ch} channels" for key, (c, ch) in seen.items())


def _connection_name(properties: object) -> str:
    if isinstance(properties, dict):
        return str(properties.get("connection_name", "?"))
    if isinstance(properties, list):  # rabbitmqctl's JSON: [name, type, value] triples
        for item in properties:
            if isinstance(item, list) and item and item[0] == "connection_name":
                return str(item[-1])
    return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-failover", action="store_true")
    args = parser.parse_args()
    if not args.skip_throughput:
        throughput(args.seconds)
    if not args.skip_failover:
        failover(args.repeats)


if __name__ == "__main__":
    main()
