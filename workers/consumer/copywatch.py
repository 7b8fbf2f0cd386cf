"""Is the shared cache being copied into this consumer? (SPEC 1.2, caches of many small objects.)

A cache built before the fork is shared by the consumers as long as nobody writes its pages; a
cache of many small Python objects is written by every read (reference counts), so each consumer
that reads it ends up with its own copy, page by page. The sign is the consumer's private memory
growing by a good part of the cache's size: past `COPY_SHARE` of it, the beat says how much
(`cache_copied_bytes`), and the worker's log says so once, pointing to the docs.
"""

from __future__ import annotations

import logging

from workers.memory import private_bytes

log = logging.getLogger("rpcfleet.worker")

COPY_SHARE = 0.25  # private growth past this share of the cache: it is being copied
MIN_CACHE_BYTES = 16 * 1024 * 1024  # below this, the noise of a process's own allocations wins
DOCS = "docs/workers.md, \"Caches of many small objects: SharedMapping\""


class CopyWatch:
    def __init__(self, worker_id: str, cache_bytes: int | None, shared: bool) -> None:
        """`shared`: the cache was built before the fork (preload); a per-process one is
        private by design and not watched."""
        self.worker_id = worker_id
        self.cache_bytes = cache_bytes if shared and cache_bytes else None
        self.baseline = private_bytes()  # right after the fork: what the process owns anyway
        self.warned = False

    def copied(self) -> int | None:
        """The private bytes gained since the start, when past COPY_SHARE of the cache; else
        None. Logs a warning the first time."""
        if self.cache_bytes is None or self.cache_bytes < MIN_CACHE_BYTES:
            return None
        now = private_bytes()
        if now is None or self.baseline is None:
            return None
        grown = now - self.baseline
        if grown <= COPY_SHARE * self.cache_bytes:
            return None
        if not self.warned:
            self.warned = True
            log.warning("consumer %s: its private memory grew by %.0f MiB, %.0f%% of the "
                        "%.0f MiB cache: the cache is being copied into this process (reading "
                        "small Python objects writes their reference counts). Build it as a "
                        "workers.SharedMapping, or of buffers: see %s", self.worker_id,
                        grown / 1048576, 100 * grown / self.cache_bytes,
                        self.cache_bytes / 1048576, DOCS)
        return grown
