"""rpcfleet and the idiomatic ways to put workers behind FastAPI, side by side in one run.

    ./run bench peers [--seconds 8] [--rounds 2] [--concurrency 1 16 64] [--only NAME ...]
                      [--plot docs/images/peers.png]

One private broker; each system is its gateway (one uvicorn process) and its worker process(es)
at prefetch 1, all doing the same work (`bench.peers.work`); `wrk` POSTs a ~200-byte JSON body.
Systems alternate within each round, and each figure is the median over the rounds.
  1. echo at each concurrency: requests/s, p50, p99, CPU ms per call (gateway + worker + broker)
  2. a ~5 ms pure-Python handler, 2 worker processes, c=16 (the ideal: 2 cores / 5 ms)
  3. jobs accepted per second at c=64 (persistent, confirmed, stored) against Celery's
     `.delay()`: with no worker running (accept only), then with it (a job's whole life)
  4. each gateway's RSS after the calls above (tens of thousands)
It prints the tables and writes a plot of requests/s and p99 against concurrency
(`bench.peers.report`).
Peers come with the `bench` extra (installed by `./run bench peers`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench.harness import RPCFLEET, env_with, post_script, private_broker, process
from bench.peers import work
from bench.peers.report import Sample, plot, report
from bench.procstat import cpu_seconds
from bench.rpc import BODY, wait_http, wrk
from rpcfleet.broker import BrokerError, LocalBroker, free_port
from workers.memory import rss_bytes

UVICORN = [sys.executable, "-m", "uvicorn", "--log-level", "warning", "--no-access-log"]


@dataclass(frozen=True)
class System:
    name: str
    gateway: Callable[[int], list[str]]  # argv for a port
    worker: Callable[[int], list[list[str]]]  # argvs for a number of worker processes
    echo: str
    burn: str | None = None
    jobs: str | None = None  # the route accepting a job (202)
    wrap_jobs: bool = False  # the job body is {"params": ...}
    env: tuple[tuple[str, str], ...] = ()
    only_burn: bool = False  # a variant measured in scenario 2 alone
    vhost: str | None = None  # its own (a second rpcfleet must not share the first's queues)


def _uvicorn(app: str) -> Callable[[int], list[str]]:
    return lambda port: [*UVICORN, "--port", str(port), app]


def _python_workers(module: str) -> Callable[[int], list[list[str]]]:
    return lambda n: [[sys.executable, "-m", module] for _ in range(n)]


SYSTEMS = [
    System("rpcfleet",
           lambda port: [*RPCFLEET, "gateway", "--port", str(port), "--workers", "1"],
           lambda n: [[*RPCFLEET, "worker", "bench.pools:pool", "--processes", str(n),
                       "--prefetch", "1"]],
           "/v1/rpc/echo", "/v1/rpc/burn", "/v1/jobs/echo", wrap_jobs=True),
    System("rpcfleet, prefetch auto",
           lambda port: [*RPCFLEET, "gateway", "--port", str(port), "--workers", "1"],
           lambda n: [[*RPCFLEET, "worker", "bench.pools:pool", "--processes", str(n),
                       "--prefetch", "auto"]],
           "/v1/rpc/echo", "/v1/rpc/burn", only_burn=True, vhost="auto"),
    System("rpcfleet, inline handler",
           lambda port: [*RPCFLEET, "gateway", "--port", str(port), "--workers", "1"],
           lambda n: [[*RPCFLEET, "worker", "bench.pools:pool", "--processes", str(n),
                       "--prefetch", "auto"]],
           "/v1/rpc/echo", "/v1/rpc/burn_inline", only_burn=True, vhost="inline"),
    System("FastAPI, no broker (ceiling)", _uvicorn("bench.peers.plain_echo:app"),
           lambda n: [], "/echo"),
    System("tutorial, direct reply-to", _uvicorn("bench.peers.tutorial_gateway:app"),
           _python_workers("bench.peers.tutorial_worker"), "/echo", "/burn",
           env=(("BENCH_REPLY", "direct"),)),
    System("tutorial, callback queue", _uvicorn("bench.peers.tutorial_gateway:app"),
           _python_workers("bench.peers.tutorial_worker"), "/echo", "/burn",
           env=(("BENCH_REPLY", "queue"),)),
    System("aio-pika JsonRPC", _uvicorn("bench.peers.aiopika_rpc:app"),
           _python_workers("bench.peers.aiopika_rpc"), "/echo", "/burn"),
    System("FastStream request", _uvicorn("bench.peers.faststream_peer:app"),
           _python_workers("bench.peers.faststream_peer"), "/echo", "/burn"),
    System("Celery, rpc:// results", _uvicorn("bench.peers.celery_peer:app"),
           lambda n: [[sys.executable, "-m", "celery", "-A", "bench.peers.celery_peer:celery",
                       "worker", "--concurrency", str(n), "--prefetch-multiplier", "1",
                       "--loglevel", "warning"]],
           "/echo", "/burn", "/jobs"),
]


class Running:
    """One system's processes: its gateway stays; its workers can be replaced."""

    def __init__(self, system: System, node: LocalBroker, logs: Path, stack: ExitStack) -> None:
        self.system = system
        url = node.amqp_url
        if system.vhost:
            node.ctl("add_vhost", system.vhost)
            node.ctl("set_permissions", "-p", system.vhost, "guest", ".*", ".*", ".*")
            url = f"{url.rstrip('/')}/{system.vhost}"
        self.env = env_with(RPCFLEET_AMQP_URL=url, BENCH_AMQP_URL=url,
                            RPCFLEET_STATE_DIR=logs / f"state-{id(self)}", **dict(system.env))
        self.logs = logs
        self.slug = re.sub(r"[^a-z0-9]+", "-", system.name.lower()).strip("-")
        self.port = free_port()
        self.gateway = stack.enter_context(process(system.gateway(self.port), self.env,
                                                   logs / f"{self.slug}-gateway.log"))
        self.workers = ExitStack()
        self.worker_pids: list[int] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start_workers(self, count: int) -> None:
        self.stop_workers()
        for n, argv in enumerate(self.system.worker(count)):
            worker = self.workers.enter_context(process(
                argv, self.env, self.logs / f"{self.slug}-worker-{n}.log"))
            self.worker_pids.append(worker.pid)

    def stop_workers(self) -> None:
        self.workers.close()
        self.workers = ExitStack()
        self.worker_pids = []

    def rss_mib(self) -> float:
        return (rss_bytes(self.gateway.pid) or 0) / 1048576


def measure(running: Running, path: str, concurrency: int, seconds: int, script: Path,
            broker_pid: int) -> Sample:
    url = running.url(path)
    wrk(url, concurrency, 2, script)  # warm-up
    pids = [running.gateway.pid, *running.worker_pids, broker_pid]
    before = cpu_seconds(pids)
    rps, p50, p99, errors, total = wrk(url, concurrency, seconds, script)
    spent = cpu_seconds(pids) - before
    return Sample(rps, p50, p99, errors, spent / max(total, 1) * 1000)


def purge(node: LocalBroker, *queues: str) -> None:
    for queue in queues:
        try:
            node.ctl("purge_queue", queue)
        except BrokerError:  # not declared (yet): nothing to purge
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--only", nargs="+", help="systems whose name starts with one of these")
    parser.add_argument("--plot", type=Path, default=Path("bench/results/peers.png"))
    parser.add_argument("--logs", type=Path, help="keep the processes' logs here")
    parser.add_argument("--scenarios", type=int, nargs="+", default=[1, 2, 3],
                        help="which of 1 (echo, with 4: RSS), 2 (CPU-bound), 3 (jobs)")
    args = parser.parse_args()
    rounds, handler_ms = work.calibrate()
    os.environ[work.ROUNDS_ENV] = str(rounds)  # every process started below burns as much
    print(f"  the ~{work.BURN_MS:g} ms handler: {rounds:,} rounds, {handler_ms:.2f} ms here",
          flush=True)
    chosen = [s for s in SYSTEMS if not args.only or any(s.name.startswith(o) for o in args.only)]
    echo: dict[tuple[str, int], list[Sample]] = defaultdict(list)
    burn: dict[str, list[Sample]] = defaultdict(list)
    jobs: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    rss: dict[str, float] = {}
    with private_broker() as node, tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        logs = args.logs or Path(tmp)
        logs.mkdir(parents=True, exist_ok=True)
        broker_pid = int(node.pid_file.read_text())
        call_script = post_script(logs / "call.lua", BODY)
        job_scripts = {False: call_script, True: post_script(logs / "job.lua",
                                                                  f'{{"params": {BODY}}}')}
        running = [Running(system, node, logs, stack) for system in chosen]
        stack.callback(lambda: [r.stop_workers() for r in running])
        for r in running:
            r.start_workers(1)
        for r in running:
            wait_http(r.url(r.system.echo), BODY, request_timeout=60)  # a slow start
            print(f"  {r.system.name} is answering", flush=True)
        callers = [r for r in running if not r.system.only_burn]
        for round_ in range(args.rounds if 1 in args.scenarios else 0):  # 1. echo, alternating
            for concurrency in args.concurrency:
                for r in callers:
                    sample = measure(r, r.system.echo, concurrency, args.seconds, call_script,
                                     broker_pid)
                    echo[(r.system.name, concurrency)].append(sample)
                    print(f"  round {round_ + 1} echo c={concurrency:<3} {r.system.name:30} "
                          f"{sample.rps:8.0f} req/s  p99 {sample.p99_ms:6.1f} ms  "
                          f"{sample.cpu_ms:.2f} ms CPU", flush=True)
        for r in callers if echo else []:  # 4. after tens of thousands of calls
            rss[r.system.name] = r.rss_mib()
        burners = [r for r in running if r.system.burn and 2 in args.scenarios]
        for r in burners:  # 2. two worker processes
            r.start_workers(2)
        for r in burners:
            wait_http(r.url(r.system.burn or ""), BODY, request_timeout=60)
        for round_ in range(args.rounds):
            for r in burners:
                ideal = work.ideal_rate(rounds)  # the machine's speed now
                sample = dataclasses.replace(measure(r, r.system.burn or "", 16, args.seconds,
                                                     call_script, broker_pid), ideal=ideal)
                burn[r.system.name].append(sample)
                print(f"  round {round_ + 1} burn c=16 {r.system.name:30} {sample.rps:8.0f} "
                      f"req/s  {100 * sample.rps / ideal:.0f} % of {ideal:.0f}", flush=True)
        takers = [r for r in running if r.system.jobs and 3 in args.scenarios]
        for phase in ("accept only", "with its worker"):  # 3. jobs
            for r in takers:
                if phase == "accept only":
                    r.stop_workers()
                else:
                    r.start_workers(1)
            for round_ in range(args.rounds):
                for r in takers:
                    purge(node, "rpcfleet.pool.timed", "celery")
                    sample = measure(r, r.system.jobs or "", 64, args.seconds,
                                     job_scripts[r.system.wrap_jobs], broker_pid)
                    jobs[(r.system.name, phase)].append(sample)
                    print(f"  round {round_ + 1} jobs ({phase}) {r.system.name:30} "
                          f"{sample.rps:8.0f} jobs/s", flush=True)
    named = [s.name for s in chosen if not s.only_burn]
    report(named, args.concurrency, echo, burn, jobs, rss)
    if echo:
        plot(named, args.concurrency, echo, args.plot)


if __name__ == "__main__":
    main()
