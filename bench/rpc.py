"""Sync RPC throughput: rpcfleet's gateway vs. the HTTP ceiling and a tutorial-style gateway.

    python -m bench.rpc [--seconds 10] [--concurrency 1 16 64] [--gateway-workers 1]
                        [--prefetch 1] [--only rpcfleet tutorial] [--profile SECONDS]
                        [--broker-busy-wait none] [--broker-threads SECONDS]

One private broker; every component in its own process; `wrk` (Debian package) as the load
generator, POSTing a ~200-byte JSON body. For each concurrency it reports requests/s, p50, p99,
errors and CPU seconds per 1,000 calls summed over gateway, worker and broker processes; then,
per component, where its time went (bench/procstat.py): user and system CPU, time runnable but
waiting for a core, and context switches, per call. `--broker-threads` adds a pass at the
highest concurrency with RabbitMQ's `runtime_thread_stats` (what its scheduler threads did,
busy-waiting included); `--broker-busy-wait none` starts the broker with `+sbwt none +sbwtdcpu
none +sbwtdio none` (no scheduler busy-waiting: RabbitMQ's advice for hosts with few cores).
  rpcfleet   : `rpcfleet gateway` + `rpcfleet worker examples.vectors:pool` (echo), prefetch 1
  ceiling    : a FastAPI echo with no broker (bench/peers/plain_echo.py)
  tutorial   : FastAPI + aio-pika written as RabbitMQ's RPC tutorial teaches, worker prefetch 1
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import profiling
from bench.harness import (
    RPCFLEET,
    children,
    env_with,
    post_script,
    private_broker,
    process,
    wait_until,
)
from bench.procstat import Usage, usage
from rpcfleet.broker import CTL, LocalBroker, free_port

BODY = json.dumps({"query": "the quick brown fox jumps over the lazy dog", "k": 10,
                   "filters": {"lang": "en", "year": [2020, 2026]},
                   "vector": [0.125, -0.5, 0.75, 0.0625, -0.25, 0.875, -0.375, 0.3125],
                   "trace": "bench-0123456789abcdef"})
BUSY_WAIT_FLAGS = {"none": ("+sbwt none", "+sbwtdcpu none", "+sbwtdio none")}


@dataclass
class Result:
    target: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_per_1000: float
    cpu_split: str  # per component: gateway / worker / broker
    spent: dict[str, Usage]  # per component, over the measured run
    calls: int


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, concurrency: int, seconds: int, script: Path) -> tuple[float, float, float, int,
                                                                           int]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                          out):
        errors += sum(int(g) for g in match.groups())
    return rps, p50, p99, errors, total


def wait_http(url: str, body: str, request_timeout: float = 5) -> None:
    def ok() -> bool:
        try:
            return httpx.post(url, content=body, timeout=request_timeout,
                              headers={"content-type": "application/json"}).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ok, timeout=120, what=url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--gateway-workers", type=int, default=1)
    parser.add_argument("--prefetch", type=int, default=1, help="rpcfleet worker prefetch")
    parser.add_argument("--only", nargs="+", default=["rpcfleet", "ceiling", "tutorial"])
    parser.add_argument("--broker-busy-wait", choices=sorted(BUSY_WAIT_FLAGS),
                        help="the broker's scheduler busy-wait (default: Erlang's)")
    parser.add_argument("--broker-threads", type=int, default=0, metavar="SECONDS",
                        help="then sample the broker's runtime_thread_stats under load at the "
                             "highest concurrency (a pass of its own: the sampler costs CPU)")
    parser.add_argument("--profile", type=int, default=0, metavar="SECONDS",
                        help="then sample rpcfleet's gateway and worker with py-spy under load "
                             "at the highest concurrency and print where their CPU goes")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench.rpc needs wrk: apt-get install -y wrk")
    results: list[Result] = []
    erl_args = BUSY_WAIT_FLAGS.get(args.broker_busy_wait or "", ())
    with private_broker(erl_args=erl_args) as node, tempfile.TemporaryDirectory() as tmp, \
            ExitStack() as stack:
        logs = Path(tmp)
        script = post_script(logs / "post.lua", BODY)
        broker_pid = int(node.pid_file.read_text())
        env = env_with(RPCFLEET_AMQP_URL=node.amqp_url, BENCH_AMQP_URL=node.amqp_url,
                       RPCFLEET_EXAMPLE_CACHE_MB=16, RPCFLEET_STATE_DIR=logs / "state")
        uvicorn = [sys.executable, "-m", "uvicorn", "--log-level", "warning", "--no-access-log"]
        targets: dict[str, tuple[str, dict[str, int]]] = {}
        if "rpcfleet" in args.only:
            port = free_port()
            worker = stack.enter_context(process(
                [*RPCFLEET, "worker", "examples.vectors:pool", "--processes", "1",
                 "--prefetch", str(args.prefetch)], env, logs / "worker.log"))
            gateway = stack.enter_context(process(
                [*RPCFLEET, "gateway", "--port", str(port), "--workers",
                 str(args.gateway_workers)], env, logs / "gateway.log"))
            url = f"http://127.0.0.1:{port}/v1/rpc/echo"
            targets["rpcfleet"] = (url, {"gateway": gateway.pid, "worker": worker.pid})
            profiled = {"gateway": gateway.pid, "worker": worker.pid}
        if "ceiling" in args.only:
            port = free_port()
            plain = stack.enter_context(process(
                [*uvicorn, "--port", str(port), "bench.peers.plain_echo:app"], env,
                logs / "plain.log"))
            targets["ceiling"] = (f"http://127.0.0.1:{port}/echo", {"server": plain.pid})
        if "tutorial" in args.only:
            port = free_port()
            tworker = stack.enter_context(process(
                [sys.executable, "-m", "bench.peers.tutorial_worker"], env,
                logs / "tworker.log"))
            tgateway = stack.enter_context(process(
                [*uvicorn, "--port", str(port), "bench.peers.tutorial_gateway:app"], env,
                logs / "tgateway.log"))
            targets["tutorial"] = (f"http://127.0.0.1:{port}/echo",
                                   {"gateway": tgateway.pid, "worker": tworker.pid})
        for name, (url, _) in targets.items():
            wait_http(url, BODY)
            print(f"  {name} is answering at {url}", flush=True)
        for concurrency in args.concurrency:
            for name, (url, pids) in targets.items():
                wrk(url, concurrency, 2, script)  # warm-up
                watched = pids | ({"broker": broker_pid} if name != "ceiling" else {})
                before = {part: usage(pid) for part, pid in watched.items()}
                rps, p50, p99, errors, total = wrk(url, concurrency, args.seconds, script)
                spent = {part: usage(pid) - before[part] for part, pid in watched.items()}
                per_call = [u.cpu_s / max(total, 1) * 1000 for u in spent.values()]
                results.append(Result(name, concurrency, rps, p50, p99, errors, sum(per_call),
                                      " / ".join(f"{c:.2f}" for c in per_call), spent, total))
                print(f"  {name:9} c={concurrency:<3} {rps:8.0f} req/s", flush=True)
                time.sleep(0.5)  # let queues settle between runs
        if args.broker_threads and "rpcfleet" in targets:
            broker_threads(node, targets["rpcfleet"][0], max(args.concurrency),
                           args.broker_threads, script)
        if args.profile and "rpcfleet" in targets:
            profile(targets["rpcfleet"][0], profiled, max(args.concurrency), args.profile,
                    script)
    print_table(results)


def broker_threads(node: LocalBroker, url: str, concurrency: int, seconds: int,
                   script: Path) -> None:
    """RabbitMQ's microstate accounting of its scheduler threads while rpcfleet is loaded."""
    diagnostics = CTL.with_name("rabbitmq-diagnostics")
    with subprocess.Popen([str(diagnostics), "-n", node.nodename, "runtime_thread_stats",
                           "--sample-interval", str(seconds)], env=node.env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as sampler:
        wrk(url, concurrency, seconds + 3, script)
        out, _ = sampler.communicate(timeout=120)
    print(f"\nbroker runtime_thread_stats, rpcfleet at c={concurrency}, {seconds} s:\n{out}")


def profile(url: str, pids: dict[str, int], concurrency: int, seconds: int,
            script: Path) -> None:
    """Sample the serving processes (uvicorn's worker or the consumer, not their parents)."""
    serving = {name: (children(pid) or [pid])[0] for name, pid in pids.items()}
    recordings = {name: profiling.Recording(pid, seconds) for name, pid in serving.items()}
    wrk(url, concurrency, seconds + 2, script)
    for name, recording in recordings.items():
        profiling.report(f"rpcfleet {name} (pid {serving[name]}), c={concurrency}",
                         recording.counts())


def print_table(results: list[Result]) -> None:
    by = {(r.target, r.concurrency): r for r in results}
    print("\n| target | c | req/s | p50 ms | p99 ms | errors | CPU s / 1,000 calls "
          "| gateway / worker / broker | rpcfleet ÷ this (req/s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ours = by.get(("rpcfleet", r.concurrency))
        ratio = f"{ours.rps / r.rps:.2f}x" if ours and r.target != "rpcfleet" else ""
        print(f"| {r.target} | {r.concurrency} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
              f"| {r.errors} | {r.cpu_per_1000:.2f} | {r.cpu_split} | {ratio} |")
    print("\nWhere the time went, per call (µs; switches per call): waiting = runnable but "
          "not running")
    print("| target | c | part | user | system | waiting | voluntary sw | involuntary sw |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        calls = max(r.calls, 1)
        for part, u in r.spent.items():
            print(f"| {r.target} | {r.concurrency} | {part} | {u.user_s / calls * 1e6:.0f} "
                  f"| {u.system_s / calls * 1e6:.0f} | {u.waiting_s / calls * 1e6:.0f} "
                  f"| {u.voluntary / calls:.2f} | {u.involuntary / calls:.2f} |")


if __name__ == "__main__":
    main()
