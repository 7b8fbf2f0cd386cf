"""Memory as the fleet view shows it: PSS per process, and the size and shape of a cache."""

from __future__ import annotations

import mmap
import sys
from dataclasses import dataclass
from typing import Any

from workers.shared_mapping import SharedMapping


def pss_bytes(pid: int | str = "self") -> int | None:
    """Proportional set size: shared pages count once across the processes sharing them."""
    return _rollup(pid, "Pss:")


def rss_bytes(pid: int | str = "self") -> int | None:
    """Resident set size: every page in memory, shared ones counted in full."""
    return _rollup(pid, "Rss:")


def private_bytes(pid: int | str = "self") -> int | None:
    """Pages only this process holds (USS): what it no longer shares with the supervisor."""
    return _rollup(pid, "Private_Clean:", "Private_Dirty:")


def available_bytes() -> int | None:
    """What the host can still give processes without swapping (MemAvailable); None: unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


CONSUMER_GUESS_BYTES = 64 << 20  # a consumer's private memory before one could be measured


def no_room_for_one(pids: list[int], margin: int) -> str | None:
    """Why one more consumer would not fit in the host's free memory, or None when it does: a
    consumer's measured private memory (the largest of `pids`) plus `margin` bytes must fit."""
    free = available_bytes()
    if free is None:
        return None
    sizes = [size for pid in pids if (size := private_bytes(pid))]
    consumer = max(sizes, default=CONSUMER_GUESS_BYTES)
    if free >= consumer + margin:
        return None
    return (f"host memory: {free >> 20} MiB free, a consumer needs {consumer >> 20} MiB "
            f"+ {margin >> 20} MiB margin")


def _rollup(pid: int | str, *fields: str) -> int | None:
    """The sum of these fields of /proc/PID/smaps_rollup, in bytes; None when unreadable."""
    total, found = 0, False
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith(fields):
                    total += int(line.split()[1]) * 1024
                    found = True
    except OSError:
        return None
    return total if found else None


@dataclass(frozen=True)
class CacheInfo:
    bytes: int | None
    shape: str  # buffers | objects | mixed | none

    @property
    def shares_well(self) -> bool:
        return self.shape in ("buffers", "none", "per-process")


_BUFFER_TYPES = (bytes, bytearray, memoryview, mmap.mmap)
_DEPTH = 3  # how deep describe() looks into containers: enough for a dict of arrays
_SAMPLE = 64  # items of a container sampled to guess its shape
LARGE_BUFFER_BYTES = 64 * 1024  # 16 pages: a refcount write dirties one of them at most
SMALL_OBJECTS_BYTES = 1024 * 1024  # Python objects this small cost little even when copied


def _buffer_size(value: Any) -> int | None:
    if isinstance(value, SharedMapping):  # one buffer and two arrays, no object per entry
        return value.nbytes
    nbytes = getattr(value, "nbytes", None)  # numpy arrays, Arrow buffers
    if isinstance(nbytes, int) and hasattr(value, "dtype"):
        dtype = value.dtype
        if getattr(dtype, "hasobject", False):
            return None  # an object array is many small Python objects
        return nbytes
    if isinstance(value, _BUFFER_TYPES):
        return len(value) if not isinstance(value, memoryview) else value.nbytes
    return None


def describe(cache: Any) -> CacheInfo:
    """Size and shape: large buffers share after fork; many small objects get copied."""
    if cache is None:
        return CacheInfo(0, "none")
    buffers, objects = _walk(cache, _DEPTH)
    total = buffers + objects
    if objects <= max(SMALL_OBJECTS_BYTES, total // 100):
        return CacheInfo(total, "buffers")  # a few attributes around big buffers share fine
    if buffers <= total // 100:
        return CacheInfo(total, "objects")
    return CacheInfo(total, "mixed")


def _walk(value: Any, depth: int) -> tuple[int, int]:
    size = _buffer_size(value)
    if size is not None:
        # A small buffer shares its pages with its header, whose refcount every read writes.
        return (size, 0) if size >= LARGE_BUFFER_BYTES else (0, size)
    if depth == 0:
        return 0, sys.getsizeof(value)
    items: list[Any]
    if isinstance(value, dict):
        items = list(value.values())
    elif isinstance(value, list | tuple | set | frozenset):
        items = list(value)
    elif hasattr(value, "__dict__"):
        items = list(vars(value).values())
    else:
        return 0, sys.getsizeof(value)
    if not items:
        return 0, sys.getsizeof(value)
    sample = items[:_SAMPLE]
    buffers = objects = 0
    for item in sample:
        b, o = _walk(item, depth - 1)
        buffers += b
        objects += o
    scale = len(items) / len(sample)
    return int(buffers * scale), int(objects * scale) + sys.getsizeof(value)
