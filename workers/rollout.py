"""New code, same cache: on SIGHUP (or, with `--watch`, when the pool's module file changes) the
supervisor imports the pool again and replaces its consumers one at a time, each drained first
(SIGTERM), the next only once the previous replacement serves. The cache stays loaded: a new
consumer is forked from it. This module keeps that state; the supervisor forks and reaps."""

from __future__ import annotations

import logging
import os
from collections.abc import Container, Iterable
from dataclasses import dataclass, field

from workers.loader import module_file, reload_pool
from workers.pool import Pool
from workers.slots import SlotTable

log = logging.getLogger("rpcfleet.worker")


def _mtime(path: str | None) -> float | None:
    try:
        return os.stat(path).st_mtime if path else None
    except OSError:
        return None


@dataclass
class Rollout:
    target: str | None  # MODULE:POOL, to import again
    watched: float | None = None  # the module file's mtime, with --watch
    requested: bool = False  # SIGHUP came
    waiting: list[int] = field(default_factory=list)  # slots still to replace
    replacing: tuple[int, int] | None = None  # (slot, old pid) being replaced

    @classmethod
    def of(cls, target: str | None, watch: bool) -> Rollout:
        return cls(target, _mtime(module_file(target)) if watch and target else None)

    def due(self) -> bool:
        """Whether new code is asked for now (SIGHUP, or the watched file changed)."""
        if self.watched is not None and self.target is not None:
            mtime = _mtime(module_file(self.target))
            if mtime != self.watched:
                self.watched = mtime
                self.requested = True
        requested, self.requested = self.requested, False
        return requested

    def load(self, current: Pool) -> Pool | None:
        """The pool imported again; None (and why, logged) when it cannot replace `current`:
        a typo in new code must not take down a serving pool."""
        if self.target is None:
            log.warning("reload asked, but this supervisor was not given its MODULE:POOL")
            return None
        try:
            pool = reload_pool(self.target)
        except Exception:
            log.exception("reloading %s failed; the consumers keep the code they run", self.target)
            return None
        if pool.name != current.name:
            log.error("reloaded %s names pool %r, not %r: not applied", self.target, pool.name,
                      current.name)
            return None
        return pool

    def start(self, slots: Iterable[int]) -> None:
        self.waiting = sorted(slots)

    def is_replacing(self, slot: int) -> bool:
        return self.replacing is not None and self.replacing[0] == slot

    def drained_for_new_code(self, pid: int) -> bool:
        return self.replacing is not None and self.replacing[1] == pid

    def next_to_drain(self, slots: SlotTable, alive: Container[int]) -> int | None:
        """The pid to drain next, once the previous replacement serves; None: not now."""
        if self.replacing is not None:
            slot, old_pid = self.replacing
            pid = slots.pid(slot)
            if pid == old_pid or slots.serving(slot) != pid:
                return None  # still draining, or its replacement is not taking messages yet
            self.replacing = None
        while self.waiting:
            slot = self.waiting.pop(0)
            pid = slots.pid(slot)
            if pid in alive:
                self.replacing = (slot, pid)
                return pid
        return None
