"""Caches of many small Python objects under forked consumers: total PSS and the cost of a read.

    python -m bench.object_cache [--entries 1000000] [--processes 1 2 4 8]
    ./run bench memory --object-cache      (the same)

The cache is what a newcomer writes first (docs/first-pool.md): a dict of `entries` products,
each a small dict (`{"id", "name", "price", "tags"}`). For each shape a parent process builds it
(as a supervisor does), forks K readers (as it forks consumers), each reads every value once
and stays; with all of them alive the total PSS of the parent and the readers is summed from
/proc/<pid>/smaps_rollup. Shapes: the plain dict; the plain dict after `gc.freeze()` (what the
supervisor does before forking); `workers.SharedMapping` built from it. The baseline ("x one
dict") is one process holding the plain dict, having read every value itself. Each case runs in
a fresh process, so none inherits another's freed memory.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from workers import SharedMapping
from workers.memory import pss_bytes

MIB = 1024 * 1024


def products(entries: int) -> dict[int, dict[str, Any]]:
    return {i: {"id": i, "name": f"product {i}", "price": i / 2, "tags": ["new", "sale"]}
            for i in range(entries)}


def read_all(cache: Mapping[int, Any], entries: int) -> float:
    """Read every value (and a field of it, as a handler would); seconds per read."""
    started = time.perf_counter()
    total = 0.0
    for key in range(entries):
        total += cache[key]["price"]
    return (time.perf_counter() - started) / entries


def forked_pss(cache: Mapping[int, Any], entries: int, readers: int) -> tuple[int, float]:
    """Total PSS of this process and `readers` forked readers that each read every value,
    measured while all of them are alive; and a reader's seconds per read."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pids = []
    for _ in range(readers):
        pid = os.fork()
        if pid == 0:
            per_read = read_all(cache, entries)
            os.write(ready_w, f"{per_read:.12f}\n".encode())
            os.read(go_r, 1)  # stay alive until measured
            os._exit(0)
        pids.append(pid)
    reads = []
    buffer = b""
    while len(reads) < readers:
        buffer += os.read(ready_r, 4096)
        *lines, buffer = buffer.split(b"\n")
        reads += [float(line) for line in lines if line]
    total = (pss_bytes() or 0) + sum(pss_bytes(pid) or 0 for pid in pids)
    os.write(go_w, b"x" * readers)
    for pid in pids:
        os.waitpid(pid, 0)
    for fd in (ready_r, ready_w, go_r, go_w):
        os.close(fd)
    return total, sum(reads) / len(reads)


def shapes(entries: int) -> dict[str, Callable[[], Mapping[int, Any]]]:
    def frozen() -> Mapping[int, Any]:
        cache = products(entries)
        gc.collect()
        gc.freeze()
        return cache

    return {"plain dict": lambda: products(entries), "dict + gc.freeze()": frozen,
            "SharedMapping": lambda: SharedMapping(products(entries))}


def one(shape: str, readers: int, entries: int) -> str:
    """One case in this (fresh) process: 'total_bytes seconds_per_read'."""
    if shape == "baseline":  # one process holding the plain dict, having read all of it
        cache = products(entries)
        per_read = read_all(cache, entries)
        return f"{pss_bytes() or 0} {per_read}"
    cache = shapes(entries)[shape]()
    gc.collect()
    total, per_read = forked_pss(cache, entries, readers)
    return f"{total} {per_read}"


def measure(shape: str, readers: int, entries: int) -> tuple[int, float]:
    """`one` in a process of its own: no case inherits another's freed memory."""
    done = subprocess.run([sys.executable, "-m", "bench.object_cache", "--one", shape,
                           str(readers), "--entries", str(entries)],
                          capture_output=True, text=True, check=True)
    total, per_read = done.stdout.split()
    return int(total), float(per_read)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--one", nargs=2, metavar=("SHAPE", "K"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(one(args.one[0], int(args.one[1]), args.entries))
        return
    report(args.entries, args.processes)


def report(entries: int, processes: list[int]) -> None:
    baseline, baseline_read = measure("baseline", 0, entries)
    print(f"{entries:,} entries; one process holding the plain dict: "
          f"{baseline / MIB:,.0f} MiB PSS, {baseline_read * 1e6:.2f} us a read", flush=True)
    print(f"{'shape':<20} {'K':>2} {'total PSS':>12} {'x one dict':>10} {'us/read':>8}")
    for name in shapes(entries):
        for readers in processes:
            total, per_read = measure(name, readers, entries)
            print(f"{name:<20} {readers:>2} {total / MIB:>9,.0f} MiB {total / baseline:>9.2f}x "
                  f"{per_read * 1e6:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
