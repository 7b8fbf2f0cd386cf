"""Jobs: what the store costs per job, and how many jobs/s the gateway accepts (persistent,
confirmed by the broker before each 202).

    python -m bench.jobs [--jobs 5000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.harness import RPCFLEET, env_with, post_script, private_broker, process
from bench.rpc import wait_http, wrk
from gateway.store import NewJob, SqliteJobStore
from protocol import JobStatus, now_ms
from rpcfleet.broker import free_port

RESULT = {"ids": list(range(20)), "scores": [0.5] * 20, "note": "x" * 40}  # ~200 bytes of JSON


async def store_costs(folder: Path, count: int) -> tuple[float, float, float]:
    path = folder / "jobs.sqlite3"
    store = SqliteJobStore(path)
    creates, finishes = [], []
    for i in range(count):
        started = time.perf_counter()
        await store.create(NewJob(id=f"job-{i:08d}", method="echo", created_ms=now_ms(),
                                  callback_url="https://example.com/hook"))
        creates.append(time.perf_counter() - started)
        started = time.perf_counter()
        await store.finish(f"job-{i:08d}", JobStatus.SUCCEEDED, RESULT, None, now_ms())
        finishes.append(time.perf_counter() - started)
    await store.close()
    return (statistics.median(creates) * 1000, statistics.median(finishes) * 1000,
            sorted(creates)[int(count * 0.99)] * 1000)


def accepted_per_second(seconds: int) -> list[tuple[int, float, float, int]]:
    rows = []
    with private_broker() as node, tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        logs = Path(tmp)
        env = env_with(RPCFLEET_AMQP_URL=node.amqp_url, RPCFLEET_STATE_DIR=logs / "state",
                       RPCFLEET_EXAMPLE_CACHE_MB=16)
        port = free_port()
        stack.enter_context(process([*RPCFLEET, "worker", "examples.vectors:pool",
                                     "--processes", "1"], env, logs / "worker.log"))
        stack.enter_context(process([*RPCFLEET, "gateway", "--port", str(port)], env,
                                    logs / "gateway.log"))
        body = json.dumps({"params": {"query": "x" * 150}})
        url = f"http://127.0.0.1:{port}/v1/jobs/echo"
        script = post_script(logs / "post.lua", body)
        wait_http(f"http://127.0.0.1:{port}/v1/rpc/echo", "{}")
        for concurrency in (1, 16, 64):
            rps, p50, p99, errors, _ = wrk(url, concurrency, seconds, script)
            rows.append((concurrency, rps, p99, errors))
            print(f"  c={concurrency}: {rps:.0f} jobs/s accepted", flush=True)
            del p50
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        create_ms, finish_ms, create_p99 = asyncio.run(store_costs(Path(folder), args.jobs))
        size = sum(p.stat().st_size for p in Path(folder).glob("jobs.sqlite3*")) / args.jobs
    print(f"\nJob store (SQLite WAL, synchronous=FULL, one write at a time), {args.jobs} jobs "
          "with a callback and a ~200-byte result:")
    print(f"  create p50 {create_ms:.3f} ms (p99 {create_p99:.3f} ms), finish + outbox row p50 "
          f"{finish_ms:.3f} ms, {size:,.0f} bytes on disk per finished job")
    rows = accepted_per_second(args.seconds)
    print("\n| c | jobs accepted/s (202, persisted, confirmed) | p99 ms | errors |")
    print("|---|---|---|---|")
    for concurrency, rps, p99, errors in rows:
        print(f"| {concurrency} | {rps:,.0f} | {p99:.1f} | {errors} |")


if __name__ == "__main__":
    main()
