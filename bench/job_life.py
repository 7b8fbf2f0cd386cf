"""A job's whole life in CPU: accepted, run, replied, recorded, announced.

    ./run bench job_life [--seconds 8] [--rounds 3] [--concurrency 64] [--profile]

One private broker, one gateway process, one worker process at prefetch 1 (the ~200-byte echo of
`bench.pools`). Each round submits jobs with `wrk` for `--seconds`, then waits until every queue
is empty (every job ran and its outcome was recorded), and divides the CPU each process spent
from the first submission to the last outcome by the jobs accepted. Medians over the rounds.
`--profile` samples the gateway and the worker with py-spy during the last round.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.harness import RPCFLEET, env_with, post_script, private_broker, process
from bench.procstat import cpu_seconds
from bench.profiling import Recording, report
from bench.rpc import BODY, wait_http, wrk
from rpcfleet.broker import LocalBroker, free_port

DRAIN_TIMEOUT_S = 300


def queued(node: LocalBroker) -> int:
    """Messages still in any queue (ready or unacked), live."""
    out = node.ctl("list_queues", "messages", "--no-table-headers", "--quiet")
    return sum(int(line) for line in out.split() if line.strip().isdigit())


def drain(node: LocalBroker) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while queued(node):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the queues did not drain within {DRAIN_TIMEOUT_S} s")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    per_job: dict[str, list[float]] = {"gateway": [], "worker": [], "broker": [], "total": []}
    with private_broker() as node, tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        env = env_with(RPCFLEET_AMQP_URL=node.amqp_url, RPCFLEET_STATE_DIR=logs / "state")
        port = free_port()
        with process([*RPCFLEET, "gateway", "--port", str(port), "--workers", "1"], env,
                     logs / "gateway.log") as gateway, \
             process([*RPCFLEET, "worker", "bench.pools:pool", "--processes", "1",
                      "--prefetch", "1"], env, logs / "worker.log") as worker:
            wait_http(f"http://127.0.0.1:{port}/v1/rpc/echo", BODY, request_timeout=60)
            url = f"http://127.0.0.1:{port}/v1/jobs/echo"
            script = post_script(logs / "job.lua", f'{{"params": {BODY}}}')
            wrk(url, args.concurrency, 2, script)  # warm-up
            pids = {"gateway": gateway.pid, "worker": worker.pid,
                    "broker": int(node.pid_file.read_text())}
            for round_ in range(args.rounds):
                drain(node)
                before = {name: cpu_seconds([pid]) for name, pid in pids.items()}
                recordings = {}
                if args.profile and round_ == args.rounds - 1:
                    recordings = {name: Recording(pids[name], args.seconds + 2)
                                  for name in ("gateway", "worker")}
                started = time.monotonic()
                rps, _, _, errors, total = wrk(url, args.concurrency, args.seconds, script)
                drain(node)
                took = time.monotonic() - started
                spent = {name: (cpu_seconds([pid]) - before[name]) / total * 1000
                         for name, pid in pids.items()}
                spent["total"] = sum(spent.values())
                for name, ms in spent.items():
                    per_job[name].append(ms)
                print(f"  round {round_ + 1}: {total:,} jobs ({rps:,.0f}/s accepted, {errors} "
                      f"errors), all ended {took:.1f} s after the first; CPU ms per job: "
                      + ", ".join(f"{name} {ms:.2f}" for name, ms in spent.items()), flush=True)
                for name, recording in recordings.items():
                    report(f"{name}, jobs at c={args.concurrency}", recording.counts())
    print(f"\nA job's whole life at c={args.concurrency}, medians of {args.rounds} rounds "
          "(CPU ms per job)")
    print("| gateway | worker | broker | whole life |")
    print("|---|---|---|---|")
    print("| " + " | ".join(f"{statistics.median(per_job[name]):.2f}"
                            for name in ("gateway", "worker", "broker", "total")) + " |")


if __name__ == "__main__":
    main()
