"""The live fleet: worker entries from beats, dropped after three missed beats."""

from __future__ import annotations

import time
from dataclasses import dataclass

from protocol import MethodDoc, WorkerEntry

MISSED_BEATS = 3  # one lost beat is noise; three is a worker that is gone


@dataclass
class _Seen:
    entry: WorkerEntry
    at: float  # monotonic


class FleetView:
    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}
        self._method_pool: dict[str, str] = {}  # every method ever announced, kept after death
        self._pool_methods: dict[str, list[str]] = {}
        self._pool_docs: dict[str, dict[str, MethodDoc]] = {}  # the latest a pool announced

    def update(self, entry: WorkerEntry) -> bool:
        """Record a beat; True when it comes from a process not seen before (a new consumer)."""
        previous = self._seen.get(entry.id)
        self._seen[entry.id] = _Seen(entry, time.monotonic())
        for method in entry.methods:
            self._method_pool[method] = entry.pool
        self._pool_methods[entry.pool] = entry.methods
        if entry.docs is not None:
            self._pool_docs[entry.pool] = entry.docs
        return previous is None or previous.entry.pid != entry.pid

    def _alive(self, seen: _Seen, now: float) -> bool:
        return now - seen.at <= MISSED_BEATS * seen.entry.beat_interval

    def workers(self) -> list[WorkerEntry]:
        now = time.monotonic()
        for worker_id in [k for k, s in self._seen.items() if not self._alive(s, now)]:
            del self._seen[worker_id]
        return sorted((s.entry for s in self._seen.values()), key=lambda e: e.id)

    def worker(self, worker_id: str) -> WorkerEntry | None:
        return next((e for e in self.workers() if e.id == worker_id), None)

    def pool_of(self, method: str) -> str | None:
        return self._method_pool.get(method)

    def has_live_worker(self, pool: str) -> bool:
        now = time.monotonic()
        return any(s.entry.pool == pool and self._alive(s, now) for s in self._seen.values())

    def pools(self) -> dict[str, list[str]]:
        """Every pool ever announced, with its methods."""
        return dict(self._pool_methods)

    def docs(self) -> dict[str, dict[str, MethodDoc]]:
        """Per pool, per method, what its workers announced for the API docs."""
        return dict(self._pool_docs)
