"""Caches of many small Python objects under forked consumers: total PSS and the cost of a read.

    python -m bench.object_cache [--entries 1000000] [--processes 1 2 4 8]
    ./run bench memory --object-cache      (the same)

The cache is what a newcomer writes first (docs/first-pool.md): a dict of `entries` products,
each a small dict (`{"id", "name", "price", "tags"}`). For each shape a parent process builds it
(as a supervisor does), forks K readers (as it forks consumers), each reads every value once
and stays; with all of them alive the total PSS of the parent and the readers is summed from
/proc/<pid>/smaps_rollup. Shapes: the plain dict; the plain dict after `gc.freeze()` (what the
supervisor does before forking); `workers.SharedMapping` built from it; and what users would
reach for instead: a numpy structured array (fixed-width columns, the key its row), an Arrow
table (pyarrow, the bench extra; a field read from its column), and a memory-mapped file of
fixed-width records (`mmap` + `struct`). Each library shape answers `cache[key]["price"]` through
a small Mapping adapter, so every shape is read the same way. The baseline ("x one dict") is one
process holding the plain dict, having read every value itself. Each case runs in a fresh process,
so none inherits another's freed memory.
"""

from __future__ import annotations

import argparse
import gc
import mmap
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
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


class Rows(Mapping[int, Any]):
    """Row `key` of a columnar shape, as a mapping of its fields (the adapter a user writes)."""

    def __init__(self, read: Callable[[int], Any], size: int) -> None:
        self._read, self._size = read, size

    def __getitem__(self, key: int) -> Any:
        return self._read(key)

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self._size))


def numpy_rows(entries: int) -> Mapping[int, Any]:
    import numpy as np

    table = np.zeros(entries, dtype=[("id", "i8"), ("name", "S24"), ("price", "f8"),
                                     ("tags", "S16")])
    for key, product in products(entries).items():
        table[key] = (product["id"], product["name"].encode(), product["price"],
                      ",".join(product["tags"]).encode())
    return Rows(table.__getitem__, entries)  # a numpy record: record["price"] works


def arrow_rows(entries: int) -> Mapping[int, Any]:
    import pyarrow as pa

    source = products(entries)
    table = pa.table({"id": [p["id"] for p in source.values()],
                      "name": [p["name"] for p in source.values()],
                      "price": [p["price"] for p in source.values()],
                      "tags": [p["tags"] for p in source.values()]})
    del source
    columns = {name: table.column(name).combine_chunks() for name in table.column_names}

    class Row:  # a row's field read from its column (a whole-row to_pylist is ~18 us)
        def __init__(self, key: int) -> None:
            self.key = key

        def __getitem__(self, field: str) -> Any:
            return columns[field][self.key].as_py()

    return Rows(Row, entries)


RECORD = struct.Struct("<q24sd16s")


def mmap_rows(entries: int) -> Mapping[int, Any]:
    handle = tempfile.TemporaryFile()
    for product in products(entries).values():
        handle.write(RECORD.pack(product["id"], product["name"].encode(), product["price"],
                                 ",".join(product["tags"]).encode()))
    handle.flush()
    mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)

    def read(key: int) -> dict[str, Any]:
        ident, name, price, tags = RECORD.unpack_from(mapped, key * RECORD.size)
        return {"id": ident, "name": name.rstrip(b"\0").decode(), "price": price,
                "tags": tags.rstrip(b"\0").decode().split(",")}

    return Rows(read, entries)


def shapes(entries: int) -> dict[str, Callable[[], Mapping[int, Any]]]:
    def frozen() -> Mapping[int, Any]:
        cache = products(entries)
        gc.collect()
        gc.freeze()
        return cache

    return {"plain dict": lambda: products(entries), "dict + gc.freeze()": frozen,
            "SharedMapping": lambda: SharedMapping(products(entries)),
            "numpy structured": lambda: numpy_rows(entries),
            "Arrow table": lambda: arrow_rows(entries),
            "mmap file": lambda: mmap_rows(entries)}


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
    parser.add_argument("--shapes", nargs="+", help="only these shapes (default: all)")
    parser.add_argument("--one", nargs=2, metavar=("SHAPE", "K"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(one(args.one[0], int(args.one[1]), args.entries))
        return
    report(args.entries, args.processes, args.shapes)


def report(entries: int, processes: list[int], only: list[str] | None = None) -> None:
    baseline, baseline_read = measure("baseline", 0, entries)
    print(f"{entries:,} entries; one process holding the plain dict: "
          f"{baseline / MIB:,.0f} MiB PSS, {baseline_read * 1e6:.2f} us a read", flush=True)
    print(f"{'shape':<20} {'K':>2} {'total PSS':>12} {'x one dict':>10} {'us/read':>8}")
    for name in shapes(entries):
        if only and name not in only:
            continue
        for readers in processes:
            total, per_read = measure(name, readers, entries)
            print(f"{name:<20} {readers:>2} {total / MIB:>9,.0f} MiB {total / baseline:>9.2f}x "
                  f"{per_read * 1e6:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
