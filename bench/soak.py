"""A soak: a steady mixed load for minutes to days, one line a minute, then a verdict on drift.

    ./run bench soak [--minutes 30] [--rate 20]

One private broker; a gateway with 2 processes on a SQLite store with a short retention (3 min)
and callback window (1 min), so the store reaches a steady size within the run; one worker host
with 2 consumers of `bench.soak_pool`. The load, all the time:

- sync `echo` calls, `--rate` a second (4 callers);
- jobs of `task` (three progress events each) with a callback to a local receiver that answers
  204 mostly, 500 one time in ten (retried) and hangs past the attempt timeout one in ten;
- every 10 s an SSE follower and a WebSocket follower of a job, to its end;
- every 5 s a `hang` job cancelled a second later;
- every 3 minutes a pool-wide prefetch change (2 <-> 4) and a consumer recycled (SIGTERM; its
  supervisor forks a new one); housekeeping and purge as configured.

Each minute: calls/s, p50/p99 (ms), errors, RSS of every rpcfleet process (MiB), their open file
descriptors, AMQP channels per connection (from the broker), store rows (jobs, outbox, events)
and file size, outbox backlog, jobs not ended. Pass: RSS, open files, channels, store rows,
outbox backlog and unfinished jobs of the last ten minutes within 10 % of the ten before (with a
small absolute floor for counts near zero); latency is reported, not gated. Run it for a day
with `--minutes 1440` (docs/reliability.md).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import signal
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from bench.harness import RPCFLEET, children, env_with, private_broker, process
from rpcfleet.broker import LocalBroker, free_port

SECRET = "whsec_" + base64.b64encode(b"rpcfleet-soak-secret-0123456789ab").decode()
RETENTION_S = 180
CALLBACK_WINDOW_S = 60
GATED = ("rss_mib", "open_files", "channels_max", "jobs_rows", "outbox_rows", "events_rows",
         "outbox_backlog", "unfinished")
FLOOR = {"open_files": 8, "channels_max": 2, "outbox_backlog": 10, "unfinished": 10,
         "rss_mib": 4, "jobs_rows": 200, "outbox_rows": 200, "events_rows": 600}


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        roll = random.random()
        if roll < 0.1:
            time.sleep(5)  # past the attempt timeout: the gateway gives up and retries
            return
        self.send_response(500 if roll < 0.2 else 204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()


class Load:
    def __init__(self, url: str, hook: str, rate: float) -> None:
        self.url, self.hook, self.rate = url, hook, rate
        self.latencies: list[float] = []
        self.errors = 0
        self.jobs: list[str] = []
        self.stop = asyncio.Event()

    async def caller(self, http: httpx.AsyncClient, pause: float) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                answer = await http.post(f"{self.url}/v1/rpc/echo", json={"x": 1}, timeout=30)
                if answer.status_code == 200:
                    self.latencies.append(time.perf_counter() - started)
                else:
                    self.errors += 1
            except httpx.HTTPError:
                self.errors += 1
            await asyncio.sleep(max(0.0, pause - (time.perf_counter() - started)))

    async def submitter(self, http: httpx.AsyncClient) -> None:
        while not self.stop.is_set():
            try:
                answer = await http.post(f"{self.url}/v1/jobs/task", json={
                    "params": {"seconds": 0.1}, "callback_url": self.hook}, timeout=30)
                if answer.status_code == 202:
                    self.jobs = [*self.jobs[-50:], answer.json()["id"]]
                else:
                    self.errors += 1
            except httpx.HTTPError:
                self.errors += 1
            await asyncio.sleep(0.2)

    async def canceller(self, http: httpx.AsyncClient) -> None:
        while not self.stop.is_set():
            try:
                job = (await http.post(f"{self.url}/v1/jobs/hang",
                                       json={"params": {"seconds": 30}})).json()["id"]
                await asyncio.sleep(1)
                await http.delete(f"{self.url}/v1/jobs/{job}")
            except (httpx.HTTPError, KeyError, ValueError):
                self.errors += 1
            await asyncio.sleep(4)

    async def followers(self, http: httpx.AsyncClient) -> None:
        import websockets

        while not self.stop.is_set():
            await asyncio.sleep(10)
            if not self.jobs:
                continue
            job = self.jobs[-1]
            try:
                async with http.stream("GET", f"{self.url}/v1/jobs/{job}/events",
                                       timeout=30) as stream:
                    async for line in stream.aiter_lines():
                        if line.startswith("event: ") and line[7:] in (
                                "succeeded", "failed", "cancelled", "expired"):
                            break
                ws_url = self.url.replace("http://", "ws://") + "/v1/jobs/ws"
                async with websockets.connect(ws_url, open_timeout=10) as socket:
                    for followed in self.jobs[-3:]:
                        await socket.send(json.dumps({"follow": followed}))
                    ended = 0
                    while ended < 3:
                        frame = json.loads(await asyncio.wait_for(socket.recv(), 30))
                        if "error" in frame or frame.get("event") in (
                                "succeeded", "failed", "cancelled", "expired"):
                            ended += 1
            except (httpx.HTTPError, OSError, TimeoutError, ValueError):
                self.errors += 1

    async def operator(self, http: httpx.AsyncClient, worker_pid: int) -> None:
        prefetch = 2
        while not self.stop.is_set():
            await asyncio.sleep(180)
            prefetch = 4 if prefetch == 2 else 2
            await http.put(f"{self.url}/v1/pools/soak/prefetch", json={"prefetch": prefetch})
            consumers = children(worker_pid)
            if consumers:
                os.kill(random.choice(consumers), signal.SIGTERM)  # recycled: a new fork

    async def run(self, worker_pid: int) -> None:
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(limits=limits, trust_env=False) as http:
            callers = [self.caller(http, 4 / self.rate) for _ in range(4)]
            await asyncio.gather(*callers, self.submitter(http), self.canceller(http),
                                 self.followers(http), self.operator(http, worker_pid))


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def open_files(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def sample(node: LocalBroker, pids: list[int], store: Path) -> dict[str, float]:
    tree = [p for pid in pids for p in (pid, *children(pid))]
    channels = [int(line.split()[-1]) for line in node.ctl(
        "list_connections", "name", "channels", "--no-table-headers", "--quiet").splitlines()
        if line.strip()]
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30) as db:
        jobs, unfinished = db.execute(
            "SELECT count(*), sum(status IN ('queued', 'running')) FROM jobs").fetchone()
        outbox, backlog = db.execute(
            "SELECT count(*), sum(state = 'pending') FROM outbox").fetchone()
        events = db.execute("SELECT count(*) FROM events").fetchone()[0]
    size = sum(p.stat().st_size for p in store.parent.glob(store.name + "*"))
    return {"rss_mib": sum(rss_mib(p) for p in tree), "open_files": sum(open_files(p)
                                                                          for p in tree),
            "processes": len(tree), "channels_max": max(channels, default=0),
            "channels_sum": sum(channels), "connections": len(channels),
            "jobs_rows": jobs, "outbox_rows": outbox, "events_rows": events,
            "store_mib": size / 2**20, "outbox_backlog": backlog or 0,
            "unfinished": unfinished or 0}


def verdict(rows: list[dict[str, float]]) -> bool:
    if len(rows) < 20:
        print("fewer than 20 minutes: no verdict (run --minutes 30 or more)")
        return True
    before, last = rows[-20:-10], rows[-10:]
    passed = True
    for key in GATED:
        a = statistics.mean(r[key] for r in before)
        b = statistics.mean(r[key] for r in last)
        allowed = max(0.10 * a, FLOOR[key])
        ok = abs(b - a) <= allowed
        passed &= ok
        print(f"  {key:>15}: {a:10.1f} -> {b:10.1f}  ({'ok' if ok else 'DRIFT'}, "
              f"allowed ±{allowed:.1f})")
    return passed


def _workers_shown(url: str) -> bool:
    try:
        return bool(httpx.get(f"{url}/v1/workers", timeout=5).json())
    except (httpx.HTTPError, ValueError):
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--rate", type=float, default=20.0, help="sync calls a second")
    args = parser.parse_args()
    port = free_port()
    with private_broker() as node, tempfile.TemporaryDirectory(prefix="rpcfleet-soak-") as d, \
            receiver() as hook:
        folder = Path(d)
        env = env_with(RPCFLEET_AMQP_URL=node.amqp_url, RPCFLEET_STATE_DIR=folder / "state",
                       RPCFLEET_JOB_RETENTION=RETENTION_S,
                       RPCFLEET_CALLBACK_WINDOW=CALLBACK_WINDOW_S,
                       RPCFLEET_CALLBACK_SECRET=SECRET, RPCFLEET_CALLBACK_ALLOW_HOSTS="127.0.0.1",
                       RPCFLEET_CALLBACK_ATTEMPT_TIMEOUT=2, RPCFLEET_CALLBACK_BACKOFF=1,
                       RPCFLEET_CALLBACK_BACKOFF_MAX=10)
        with process([*RPCFLEET, "worker", "bench.soak_pool:pool", "--processes", "2",
                      "--prefetch", "2"], env, folder / "worker.log") as worker, \
                process([*RPCFLEET, "gateway", "--port", str(port), "--workers", "2"], env,
                        folder / "gateway.log") as gateway:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while not _workers_shown(url):
                if time.monotonic() > deadline:
                    raise SystemExit("the gateway or the worker did not come up:\n"
                                     + (folder / "gateway.log").read_text()[-2000:]
                                     + (folder / "worker.log").read_text()[-2000:])
                time.sleep(0.2)
            load = Load(url, hook, args.rate)
            loop = asyncio.new_event_loop()
            runner = threading.Thread(target=loop.run_until_complete,
                                      args=(load.run(worker.pid),), daemon=True)
            runner.start()
            store = folder / "state" / "jobs.sqlite3"
            rows: list[dict[str, float]] = []
            print("min  calls/s  p50ms  p99ms  errs  procs  rss_MiB  files  chan/conn  conns  "
                  "jobs  outbox  events  store_MiB  backlog  unfinished", flush=True)
            for minute in range(1, args.minutes + 1):
                mark = len(load.latencies)
                errors = load.errors
                time.sleep(60)  # the reporting period: one line a minute
                window = sorted(load.latencies[mark:])
                row = sample(node, [gateway.pid, worker.pid], store)
                rows.append(row)
                p50 = window[len(window) // 2] * 1000 if window else 0.0
                p99 = window[int(len(window) * 0.99)] * 1000 if window else 0.0
                print(f"{minute:3d}  {len(window) / 60:7.1f}  {p50:5.1f}  {p99:5.1f}  "
                      f"{load.errors - errors:4d}  {row['processes']:5.0f}  "
                      f"{row['rss_mib']:7.1f}  {row['open_files']:5.0f}  "
                      f"{row['channels_max']:9.0f}  {row['connections']:5.0f}  "
                      f"{row['jobs_rows']:5.0f}  {row['outbox_rows']:6.0f}  "
                      f"{row['events_rows']:6.0f}  {row['store_mib']:9.1f}  "
                      f"{row['outbox_backlog']:7.0f}  {row['unfinished']:10.0f}", flush=True)
            loop.call_soon_threadsafe(load.stop.set)
            runner.join(timeout=60)
            print("last ten minutes against the ten before:")
            print("PASS" if verdict(rows) else "FAIL")


if __name__ == "__main__":
    main()
