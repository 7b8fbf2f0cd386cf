"""Memory: total PSS of a worker pool over the example index, preloaded vs. one cache per process.

    python -m bench.memory [--cache-mb 1024] [--processes 1 2 4]
    python -m bench.memory --object-cache [--entries 1000000] [--processes 1 2 4 8]

For each K it starts `rpcfleet worker examples.vectors:pool --processes K`, makes every consumer
scan the whole index (so every page is touched in every process), then sums PSS over the
supervisor and its consumers from /proc/<pid>/smaps_rollup. The naive row is the same pool with
`--no-preload`: each consumer builds its own index, as K separate API processes would.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from bench.harness import RPCFLEET, env_with, private_broker, process, tree_pss, wait_until
from protocol import names
from tests.support.amqp_client import amqp_client
from tests.support.processes import consumer_count
from workers.memory import private_bytes

MIB = 1024 * 1024


async def touch_every_consumer(amqp_url: str, consumers: set[int]) -> None:
    """Scan the whole index in every consumer: `nearest` reads every row."""
    async with amqp_client(amqp_url) as client:
        seen: set[int] = set()
        while seen < consumers:
            batch = await asyncio.gather(*(client.call("nearest", {"vector_of": 1, "k": 3},
                                                       timeout=120) for _ in consumers))
            lookups = await asyncio.gather(*(client.call("lookup", {"id": 1}, timeout=60)
                                             for _ in consumers))
            assert all(a.reply.ok for a in batch)
            seen |= {int(a.reply.result["served_by"]) for a in lookups}


def private_mib(pids: list[int]) -> float:
    """Mean private memory (USS: pages no other process shares) of these processes, MiB."""
    sizes = [private_bytes(pid) or 0 for pid in pids]
    return sum(sizes) / max(len(sizes), 1) / MIB


def measure(amqp_url: str, processes: int, preload: bool, cache_mb: int,
            log: Path) -> tuple[int, float, float]:
    """(total PSS of the tree, mean private MiB of a consumer, private MiB of the supervisor)."""
    argv = [*RPCFLEET, "worker", "examples.vectors:pool", "--processes", str(processes)]
    if not preload:
        argv.append("--no-preload")
    env = env_with(RPCFLEET_AMQP_URL=amqp_url, RPCFLEET_EXAMPLE_CACHE_MB=cache_mb)
    with process(argv, env, log) as supervisor:
        wait_until(lambda: consumer_count(amqp_url, names.pool_queue("vectors")) >= processes,
                   timeout=600, what=f"{processes} consumers")
        _, kids = tree_pss(supervisor.pid)
        asyncio.run(touch_every_consumer(amqp_url, set(kids)))
        total, kids = tree_pss(supervisor.pid)
        consumer, own = private_mib(kids), private_mib([supervisor.pid])
    wait_until(lambda: consumer_count(amqp_url, names.pool_queue("vectors")) == 0,
               timeout=60, what="the pool to stop")
    return total, consumer, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-mb", type=int, default=1024)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--object-cache", action="store_true",
                        help="instead: a cache of many small Python objects, as a plain dict, "
                             "after gc.freeze() and as workers.SharedMapping (bench.object_cache)")
    parser.add_argument("--entries", type=int, default=1_000_000,
                        help="entries of the object cache (--object-cache)")
    args = parser.parse_args()
    if args.object_cache:
        from bench.object_cache import report

        report(args.entries, args.processes)
        return
    rows = []
    with private_broker() as node, tempfile.TemporaryDirectory() as logs:
        for k in args.processes:
            shared = measure(node.amqp_url, k, True, args.cache_mb, Path(logs) / f"p{k}.log")
            naive = measure(node.amqp_url, k, False, args.cache_mb, Path(logs) / f"n{k}.log")
            rows.append((k, shared, naive))
            print(f"  measured K={k}", flush=True)
    cache = args.cache_mb * MIB
    print(f"\nTotal PSS, supervisor + K consumers, example index of {args.cache_mb} MiB "
          "(every consumer scanned the whole index); private = pages only that process holds "
          "(USS)\n")
    print("| K | preloaded, shared (MiB) | x cache | per consumer over 1 cache (MiB) "
          "| private per consumer (MiB) | supervisor private (MiB) "
          "| one cache per process (MiB) | x cache | saved |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k, (shared, consumer, own), (naive, _, _) in rows:
        print(f"| {k} | {shared / MIB:,.0f} | {shared / cache:.2f} | "
              f"{(shared - cache) / k / MIB:,.1f} | {consumer:.1f} | {own:.1f} | "
              f"{naive / MIB:,.0f} | {naive / cache:.2f} | {(1 - shared / naive) * 100:.0f}% |")


if __name__ == "__main__":
    main()
