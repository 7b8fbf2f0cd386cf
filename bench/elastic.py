"""Elastic pools against fixed ones: a load that steps from 1x to 8x and back.

    ./run bench elastic [--step-seconds 60] [--scale-idle 10] [--plot docs/images/elastic.png]

One gateway process and one worker host running `bench.pools:pool`'s `wait_50ms` (a handler that
waits 50 ms, as I/O or a GIL-releasing native call would: 2 cores are not the limit). An
open-loop load (requests sent on a schedule, whatever the answers do, as independent clients
would) of 15 calls/s (1x: one consumer 75 % busy), then 120/s (8x: 6 consumers' worth), then
15/s again, `--step-seconds` each, against three pools: `--processes 1..8` (elastic), `8` and
`1` (fixed). Reported per step: p50 and p99 latency (queue wait is latency minus the 50 ms of
work), the consumers over time (sampled every 0.25 s from the supervisor's children), their
consumer-seconds against the ideal (the fewest consumers that keep up at each step: ceil(rate x
50 ms)), the time from the step up to the first added consumer, and the pool's PSS at its
largest. `--plot` draws consumers and p99 over time (needs matplotlib: the bench extra).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.harness import (
    RPCFLEET,
    children,
    env_with,
    private_broker,
    process,
    tree_pss,
    wait_until,
)
from rpcfleet.broker import free_port

WORK_S = 0.05
BASE_RATE = 15.0  # calls/s at 1x
STEPS = (1, 8, 1)
CONFIGS = {"elastic 1..8": "1..8", "fixed 8": "8", "fixed 1": "1"}


@dataclass
class Run:
    name: str
    step_s: float
    calls: list[tuple[float, float, int]] = field(default_factory=list)  # (sent, s, status)
    consumers: list[tuple[float, int]] = field(default_factory=list)  # (t, count)
    peak_pss: int = 0


CONNECTIONS = 256  # keep-alive connections the load keeps open; more waiting calls queue here


async def _load(url: str, step_s: float, run: Run, start: float) -> None:
    """Open loop: each call is due at its time, whatever the earlier ones are doing; its latency
    counts from when it was due, so a call waiting here for a free connection (every one
    holding a call the pool has not answered) is as late as one waiting in the pool's queue."""
    host, port = url.removeprefix("http://").split(":")
    due: asyncio.Queue[float | None] = asyncio.Queue()

    request = (f"POST /v1/rpc/wait_50ms HTTP/1.1\r\nHost: {host}\r\n"
               "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}").encode()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while (at := await due.get()) is not None:
                writer.write(request)
                status = await _response(reader)
                if status == 0:  # the server closed it while idle (keep-alive timeout): again
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
                    writer.write(request)
                    status = await _response(reader)
                run.calls.append((at - start, time.monotonic() - at, status))
        finally:
            writer.close()

    senders = [asyncio.create_task(connection()) for _ in range(CONNECTIONS)]
    for index, factor in enumerate(STEPS):
        rate = BASE_RATE * factor
        step_start = start + index * step_s
        for n in range(int(rate * step_s)):
            at = step_start + n / rate
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            due.put_nowait(at)
    for _ in senders:
        due.put_nowait(None)
    await asyncio.gather(*senders)


async def _response(reader: asyncio.StreamReader) -> int:
    """One HTTP/1.1 response off a keep-alive connection: its status (the body is read off);
    0 when the connection was closed."""
    first = (await reader.readline()).split()
    if len(first) < 2:
        return 0
    status = int(first[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


def measure(name: str, processes: str, step_s: float, scale_idle: float, folder: Path,
            amqp_url: str) -> Run:
    run = Run(name, step_s)
    port = free_port()
    env = env_with(RPCFLEET_AMQP_URL=amqp_url, RPCFLEET_SCALE_IDLE=scale_idle,
                   RPCFLEET_STATE_DIR=folder / "state", RPCFLEET_RPC_TIMEOUT_DEFAULT=60)
    worker_argv = [*RPCFLEET, "worker", "bench.pools:pool", "--processes", processes]
    gateway_argv = [*RPCFLEET, "gateway", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with process(worker_argv, env, folder / f"worker-{processes}.log") as supervisor, \
            process(gateway_argv, env, folder / f"gateway-{processes}.log"):
        least = int(processes.split("..")[0])
        wait_until(lambda: len(children(supervisor.pid)) >= least, 60, "the consumers")
        wait_until(lambda: _ready(url), 60, "the gateway to see the pool")
        stop = threading.Event()

        def sample() -> None:
            beat = time.monotonic()
            while not stop.is_set():
                now = time.monotonic()
                run.consumers.append((now - start, len(children(supervisor.pid))))
                if now - beat >= 2:
                    beat = now
                    run.peak_pss = max(run.peak_pss, tree_pss(supervisor.pid)[0])
                stop.wait(0.25)

        start = time.monotonic()
        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            asyncio.run(_load(url, step_s, run, start))
        finally:
            stop.set()
            sampler.join()
    return run


def _ready(url: str) -> bool:
    try:
        return httpx.post(f"{url}/v1/rpc/wait_50ms", json={}, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(runs: list[Run]) -> None:
    step_s = runs[0].step_s
    print(f"\nload: {' -> '.join(f'{BASE_RATE * f:.0f}/s' for f in STEPS)}, {step_s:.0f} s "
          f"each; handler waits {WORK_S * 1000:.0f} ms")
    ideal = sum(math.ceil(BASE_RATE * f * WORK_S) for f in STEPS) * step_s
    print(f"{'pool':<14} {'step':>5} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
          f"{'consumers':>10}")
    for run in runs:
        for index, factor in enumerate(STEPS):
            lo, hi = index * step_s, (index + 1) * step_s
            latencies = [s * 1000 for sent, s, status in run.calls
                         if lo <= sent < hi and status == 200]
            errors = sum(1 for sent, _, status in run.calls if lo <= sent < hi and status != 200)
            counts = [c for t, c in run.consumers if lo <= t < hi]
            mean = statistics.fmean(counts) if counts else float("nan")
            print(f"{run.name:<14} {factor:>4}x {_pct(latencies, 0.5):>8.1f} "
                  f"{_pct(latencies, 0.99):>8.1f} {errors:>7} {mean:>10.2f}")
    print(f"\n{'pool':<14} {'consumer-s':>11} {'x ideal':>8} {'first add':>10} "
          f"{'peak PSS MiB':>13}")
    for run in runs:
        used = sum(c * 0.25 for t, c in run.consumers if t < len(STEPS) * step_s)
        before = [c for t, c in run.consumers if t < step_s]
        base = max(before) if before else 0
        added = next((t - step_s for t, c in run.consumers if t >= step_s and c > base), None)
        first = f"{added:.2f} s" if added is not None else "-"
        print(f"{run.name:<14} {used:>11.0f} {used / ideal:>8.2f} {first:>10} "
              f"{run.peak_pss / 1048576:>13.0f}")
    print(f"(ideal: {ideal:.0f} consumer-seconds, the fewest that keep up at each step)")


def plot(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for run in runs:
        top.step([t for t, _ in run.consumers], [c for _, c in run.consumers], where="post",
                 label=run.name)
        window = 5.0
        end = len(STEPS) * run.step_s
        xs, ys = [], []
        at = 0.0
        while at < end:
            latencies = [s * 1000 for sent, s, status in run.calls
                         if at <= sent < at + window and status == 200]
            if latencies:
                xs.append(at + window / 2)
                ys.append(_pct(latencies, 0.99))
            at += window
        bottom.plot(xs, ys, label=run.name)
    top.set_ylabel("consumers")
    top.set_xlim(0, len(STEPS) * runs[0].step_s)
    top.legend(loc="upper left")
    bottom.set_ylabel("p99 latency, ms (5 s windows)")
    bottom.set_yscale("log")
    bottom.set_xlabel("seconds (load 1x, 8x, 1x)")
    for axis in (top, bottom):
        for index in range(1, len(STEPS)):
            axis.axvline(index * runs[0].step_s, color="grey", linewidth=0.5)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--step-seconds", type=float, default=60.0)
    parser.add_argument("--scale-idle", type=float, default=10.0,
                        help="RPCFLEET_SCALE_IDLE for the elastic pool (default 10)")
    parser.add_argument("--only", choices=list(CONFIGS), nargs="+", default=list(CONFIGS))
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    runs = []
    with private_broker() as broker, tempfile.TemporaryDirectory() as folder:
        for name in args.only:
            print(f"{name}: {len(STEPS) * args.step_seconds:.0f} s of load", flush=True)
            runs.append(measure(name, CONFIGS[name], args.step_seconds, args.scale_idle,
                                Path(folder), broker.amqp_url))
    report(runs)
    if args.plot:
        plot(runs, args.plot)


if __name__ == "__main__":
    main()
