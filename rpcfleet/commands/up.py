"""`rpcfleet up`: the whole thing on one machine — a private RabbitMQ node, the gateway and the
example worker pool — with logs prefixed by component and a clean stop on Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

HELP = "run a local broker, the gateway and the example pool (Ctrl-C stops all)"
EXAMPLE_POOL = "examples.vectors:pool"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8000, help="gateway HTTP port (default 8000)")
    parser.add_argument("--amqp-port", type=int, default=5672, help="broker port (default 5672)")
    parser.add_argument("--processes", default="2",
                        help="example pool consumers: N, or MIN..MAX (elastic)")
    parser.add_argument("--gateway-workers", type=int, default=1, help="gateway processes")
    parser.add_argument("--pool", default=EXAMPLE_POOL,
                        help=f"MODULE:POOL (default {EXAMPLE_POOL})")
    parser.add_argument("--app-dir", default=".",
                        help="folder to import the pool's module from (default .: the example "
                             "pool lives in the source tree, not in the installed package)")
    parser.add_argument("--state-dir", type=Path, default=Path(".rpcfleet"))
    parser.add_argument("--management", action="store_true", help="enable the management UI")
    parser.add_argument("--cache-mb", type=int, default=256, help="size of the example index")


class Component:
    """A child process whose lines we print behind its name."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)  # Ctrl-C is ours to forward
        self._pump = threading.Thread(target=self._forward, daemon=True)
        self._pump.start()

    def _forward(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            print(f"{self.name:>8} | {line}", flush=True)

    def stop(self, timeout: float) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._pump.join(timeout=2)


def run(args: argparse.Namespace) -> int:
    from rpcfleet.broker import BrokerError, LocalBroker

    node = LocalBroker(directory=args.state_dir / "broker", port=args.amqp_port,
                       management_port=15672 if args.management else None)
    started_broker = not node.is_running()
    print(f"{'broker':>8} | starting a private RabbitMQ node on 127.0.0.1:{args.amqp_port}"
          if started_broker else f"{'broker':>8} | reusing the node on port {args.amqp_port}",
          flush=True)
    try:
        node.start()
    except BrokerError as exc:
        print(f"rpcfleet up: {exc}")
        return 1
    env = {**os.environ, "RPCFLEET_AMQP_URL": node.amqp_url,
           "RPCFLEET_STATE_DIR": str(args.state_dir), "PYTHONUNBUFFERED": "1",
           "RPCFLEET_EXAMPLE_CACHE_MB": str(args.cache_mb)}
    pages = Path(args.app_dir) / "examples" / "pages"
    if pages.is_dir():  # the example page, same-origin with the API: /pages/jobs.html
        env.setdefault("RPCFLEET_PAGES_DIR", str(pages.resolve()))
    me = [sys.executable, "-m", "rpcfleet.cli"]
    components = [
        Component("workers", [*me, "worker", args.pool, "--app-dir", args.app_dir,
                              "--processes", args.processes], env),
        Component("gateway", [*me, "gateway", "--port", str(args.port),
                              "--workers", str(args.gateway_workers)], env),
    ]
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    code = 0
    try:
        base = f"http://127.0.0.1:{args.port}"
        if _wait_ready(base, components, stop):
            _print_quickstart(base, node.management_url, args.pool == EXAMPLE_POOL,
                              "RPCFLEET_PAGES_DIR" in env)
        while not stop.is_set():
            if any(c.proc.poll() is not None for c in components):
                dead = [c.name for c in components if c.proc.poll() is not None]
                print(f"rpcfleet up: {', '.join(dead)} exited; stopping", flush=True)
                code = 1
                break
            stop.wait(0.5)
    finally:
        print("rpcfleet up: stopping (the pool drains in-flight work first)", flush=True)
        for component in reversed(components):
            component.stop(timeout=40)
        if started_broker:
            node.stop()
            print(f"{'broker':>8} | stopped", flush=True)
    return code


def _wait_ready(base: str, components: list[Component], stop: threading.Event) -> bool:
    deadline = time.monotonic() + 300  # the example index takes a few seconds to build
    while not stop.is_set() and time.monotonic() < deadline:
        if any(c.proc.poll() is not None for c in components):
            return False
        try:
            ready = httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            workers = httpx.get(f"{base}/v1/workers", timeout=2)
            if ready and workers.status_code == 200 and workers.json():
                return True
        except httpx.HTTPError:
            pass
        stop.wait(0.5)
    return False


def _print_quickstart(base: str, management: str | None, example: bool, pages: bool) -> None:
    """What to try, one command a line, each working when pasted as printed (the job's id is
    kept in $JOB by the line that submits it). The example pool's methods for the example
    pool; for another, the methods its workers announce."""
    lines = ["", "rpcfleet is up. Try:"]
    if example:
        lines += [
            f"  curl -s {base}/v1/rpc/nearest -d '{{\"vector_of\": 42, \"k\": 3}}'",
            f"  curl -s {base}/v1/rpc/lookup -d '{{\"id\": 7}}'",
            f"  JOB=$(curl -s -X POST {base}/v1/jobs/reindex -d '{{\"params\": {{\"steps\": 5}}}}'"
            " | python3 -c 'import json, sys; print(json.load(sys.stdin)[\"id\"])')",
            f"  curl -s {base}/v1/jobs/$JOB",
            f"  curl -N {base}/v1/jobs/$JOB/events",
        ]
        pool = "vectors"
    else:
        workers = httpx.get(f"{base}/v1/workers", timeout=5).json()  # ready: one at least
        if isinstance(workers, list) and workers:
            pool, methods = workers[0]["pool"], workers[0]["methods"]
        else:  # keys set: the fleet is not open to read
            pool, methods = "POOL", ["METHOD"]
        lines += [f"  curl -s -X POST {base}/v1/rpc/{method} -d '{{}}'   # your params here"
                  for method in methods]
    lines += [
        f"  curl -s {base}/v1/workers",
        f"  curl -s -X PUT {base}/v1/pools/{pool}/prefetch -d '{{\"prefetch\": 4}}'",
        f"  curl -s -X PUT {base}/v1/pools/{pool}/processes -d '{{\"min\": 1, \"max\": 4}}'",
        f"  open {base}/ui (fleet page), {base}/docs (API)"
        + (f", {base}/pages/jobs.html (a job, live)" if pages else ""),
    ]
    if management:
        lines.append(f"  RabbitMQ management: {management} (guest/guest)")
    lines.append("Ctrl-C stops everything.\n")
    print("\n".join(lines), flush=True)
