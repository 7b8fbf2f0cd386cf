"""What idle followers of jobs cost a gateway (SPEC 1.1: push-driven events, no per-stream polling).

    ./run bench followers [--followers 1000] [--idle 10]

One gateway process and one worker (prefetch 1) busy with a long job, so the other jobs stay
queued: N WebSockets each follow one queued job (`/v1/jobs/{id}/ws`) and then sit idle. Prints the
gateway's RSS and CPU (per cent of one core) while idle without followers, then with N, and how
long a progress event takes to reach a follower while the others idle. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import resource
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.harness import RPCFLEET, env_with, private_broker, process, wait_until
from bench.procstat import cpu_seconds
from rpcfleet.broker import free_port
from workers.memory import rss_bytes


def idle_cost(pid: int, seconds: float) -> tuple[float, float]:
    """(RSS MiB, CPU % of one core) of `pid` over `seconds` of doing nothing asked of it."""
    before, started = cpu_seconds([pid]), time.monotonic()
    time.sleep(seconds)  # the measuring window
    used = cpu_seconds([pid]) - before
    return (rss_bytes(pid) or 0) / 1048576, 100 * used / (time.monotonic() - started)


async def follow(url: str, job_ids: list[str]) -> list[ClientConnection]:
    sockets: list[ClientConnection] = []
    for start in range(0, len(job_ids), 100):  # 100 handshakes at a time
        sockets += await asyncio.gather(*(connect(f"{url}/v1/jobs/{job_id}/ws",
                                                  open_timeout=60, max_queue=None)
                                          for job_id in job_ids[start:start + 100]))
    for socket in sockets:  # each has its backlog (queued) before it idles
        await socket.recv()
    return sockets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--followers", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, args.followers * 2 + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))  # the gateway inherits it
    port = free_port()
    url, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    with ExitStack() as stack:
        node = stack.enter_context(private_broker())
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="followers-")))
        env = env_with(RPCFLEET_AMQP_URL=node.amqp_url, RPCFLEET_STATE_DIR=folder,
                       RPCFLEET_EXAMPLE_CACHE_MB=1)
        stack.enter_context(process([*RPCFLEET, "worker", "examples.vectors:pool",
                                     "--processes", "1", "--prefetch", "1"], env,
                                    folder / "worker.log"))
        gateway = stack.enter_context(process([*RPCFLEET, "gateway", "--port", str(port)], env,
                                              folder / "gateway.log"))

        def ready() -> bool:
            try:
                return bool(httpx.get(f"{url}/v1/workers", timeout=2).json())
            except (httpx.HTTPError, ValueError):
                return False

        wait_until(ready, 120, "the gateway and its worker")
        with httpx.Client(base_url=url, timeout=30) as http:
            # A long job keeps the only consumer busy: the jobs after it stay queued.
            busy = http.post("/v1/jobs/reindex", json={"params": {
                "steps": 1000, "step_seconds": 0.05}}).json()["id"]
            ids = [http.post("/v1/jobs/echo", json={"params": {"n": n}}).json()["id"]
                   for n in range(args.followers)]
        rss0, cpu0 = idle_cost(gateway.pid, args.idle)
        print(f"gateway idle, no followers:   RSS {rss0:6.1f} MiB  CPU {cpu0:5.2f} %")
        loop = asyncio.new_event_loop()
        started = time.monotonic()
        sockets = loop.run_until_complete(follow(ws_url, ids))
        print(f"{len(sockets)} followers connected in {time.monotonic() - started:.1f} s")
        rss1, cpu1 = idle_cost(gateway.pid, args.idle)
        print(f"gateway idle, {len(sockets)} followers: RSS {rss1:6.1f} MiB  CPU {cpu1:5.2f} %"
              f"  ({(rss1 - rss0) * 1024 / max(len(sockets), 1):.1f} KiB per follower)")

        async def progress_latency() -> list[float]:
            """The busy job's own follower, while the others idle: it reports every 50 ms.
            The first second replays its backlog; the gaps after it are live."""
            async with connect(f"{ws_url}/v1/jobs/{busy}/ws") as socket:
                seen, until = [], time.monotonic() + 3
                while time.monotonic() < until:
                    await socket.recv()
                    seen.append(time.monotonic())
            live = [t for t in seen if t > seen[0] + 1]
            return [b - a for a, b in itertools.pairwise(live)]

        gaps = loop.run_until_complete(progress_latency())
        print(f"a live follower among them: progress every {statistics.median(gaps) * 1000:.0f} "
              "ms (the job reports every 50 ms)")
        async def close_all() -> None:
            await asyncio.gather(*(socket.close() for socket in sockets))

        loop.run_until_complete(close_all())
        loop.close()


if __name__ == "__main__":
    main()
