"""What idle RabbitMQ nodes cost on a small machine, with and without fewer busy-waiting
schedulers (`RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+S 1 +sbwt none"`).

    ./run bench broker_idle [--seconds 20]

Starts one node, then a 3-node cluster (as `rpcfleet broker --nodes 3` does), each both ways, lets
it settle, and prints the CPU its Erlang VMs burn doing nothing (% of one core), and how long the
cluster took to start. Asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.procstat import cpu_seconds
from rpcfleet.broker import LocalBroker, free_port, free_port_run
from rpcfleet.cluster import LocalCluster

FLAGS = ("+S 1", "+sbwt none", "+sbwtdcpu none", "+sbwtdio none")


def idle_cpu(nodes: list[LocalBroker], seconds: int) -> float:
    pids = [int(node.pid_file.read_text()) for node in nodes]
    time.sleep(5)  # past the start's own work
    before = cpu_seconds(pids)
    time.sleep(seconds)  # the idle window measured
    return (cpu_seconds(pids) - before) / seconds * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    rows = []
    for erl_args in ((), FLAGS):
        flags = " ".join(erl_args)
        with tempfile.TemporaryDirectory(prefix="rpcfleet-idle-") as folder:
            node = LocalBroker(Path(folder) / "one", port=free_port(), name="idle",
                               erl_args=erl_args)
            started = time.monotonic()
            node.start()
            took = time.monotonic() - started
            try:
                rows.append(("1 node", flags or "(defaults)", took, idle_cpu([node], args.seconds)))
            finally:
                node.stop()
            cluster = LocalCluster(Path(folder) / "three", port=free_port_run(3),
                                   erl_args=erl_args)
            started = time.monotonic()
            cluster.start()
            took = time.monotonic() - started
            try:
                rows.append(("3 nodes", flags or "(defaults)", took,
                             idle_cpu(cluster.nodes, args.seconds)))
            finally:
                cluster.stop()
        print(f"  measured {rows[-2][0]} and {rows[-1][0]} with {flags or 'defaults'}", flush=True)
    print("\n| nodes | scheduler flags | start s | idle CPU, % of one core |\n|---|---|---|---|")
    for name, flags, took, cpu in rows:
        print(f"| {name} | {flags} | {took:.1f} | {cpu:.1f} |")


if __name__ == "__main__":
    main()
