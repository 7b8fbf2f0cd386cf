"""The supervisor: loads the cache ONCE, forks the consumers that share it, replaces the dead.

It runs no event loop and holds no AMQP connection (a forked loop leaks its signal wakeup fd into
the children). Its only other duty is the backstop: a consumer still running a job past its hard
deadline (time limit or cancel + grace) gets SIGKILL, and the job gets a tombstone so whichever
consumer receives it again answers it instead of running it again.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import time
from types import FrameType

from rpcfleet.settings import WorkerSettings
from workers.consumer.recycle import EXIT_RECYCLE
from workers.consumer.state import ConsumerSetup
from workers.memory import CacheInfo, describe
from workers.pool import Pool
from workers.process import run_in_child
from workers.slots import SlotTable

log = logging.getLogger("rpcfleet.supervisor")

WATCH_INTERVAL_S = 0.2  # how often deaths and overdue jobs are checked
RESPAWN_BACKOFF_S = 1.0  # a slot whose consumer dies at once is not re-forked in a tight loop
SHUTDOWN_GRACE_S = 10.0  # beyond the consumers' drain timeout, before SIGKILL


class Supervisor:
    def __init__(self, pool: Pool, settings: WorkerSettings, host: str | None = None) -> None:
        self.pool = pool
        self.settings = settings
        self.host = host or socket.gethostname()
        self.slots = SlotTable(settings.processes)
        self.children: dict[int, int] = {}  # pid -> slot
        self._stopping = False
        self._last_fork: dict[int, float] = {}

    def run(self) -> int:
        started = time.monotonic()
        cache = self.pool.load_cache() if self.settings.preload else None
        info = describe(cache) if self.settings.preload else CacheInfo(None, "per-process")
        log.info("pool %s: cache of %s bytes (%s) loaded in %.1f s", self.pool.name, info.bytes,
                 info.shape, time.monotonic() - started)
        if not info.shares_well:
            log.warning("the cache is made of many small Python objects: reference counting "
                        "copies its pages into every consumer. Keep big data in buffers.")
        gc.collect()
        gc.freeze()  # the collector's own writes would unshare pages after fork
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        for slot in self.slots.slots():
            self._fork(slot, cache, info)
        try:
            self._watch(cache, info)
        finally:
            self._shutdown()
        return 0

    def _fork(self, slot: int, cache: object, info: CacheInfo) -> None:
        self._last_fork[slot] = time.monotonic()
        setup = ConsumerSetup(pool=self.pool, cache=cache, cache_info=info,
                              settings=self.settings, slot=slot, slots=self.slots,
                              host=self.host)
        pid = os.fork()
        if pid == 0:
            run_in_child(setup)  # never returns
        self.slots.set_pid(slot, pid)
        self.children[pid] = slot
        log.info("slot %s: consumer pid %s", slot, pid)

    def _watch(self, cache: object, info: CacheInfo) -> None:
        while not self._stopping:
            self._reap(cache, info)
            self._backstop()
            time.sleep(WATCH_INTERVAL_S)

    def _reap(self, cache: object, info: CacheInfo) -> None:
        while self.children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            slot = self.children.pop(pid, None)
            if slot is None or self._stopping:
                continue
            if os.waitstatus_to_exitcode(status) == EXIT_RECYCLE:
                log.info("slot %s: consumer pid %s recycled; forking a fresh one", slot, pid)
            else:
                log.warning("slot %s: consumer pid %s exited (%s); forking a replacement", slot,
                            pid, _describe_status(status))
            wait = RESPAWN_BACKOFF_S - (time.monotonic() - self._last_fork.get(slot, 0.0))
            if wait > 0:
                time.sleep(wait)
            self._fork(slot, cache, info)

    def _backstop(self) -> None:
        now = time.time_ns() // 1_000_000
        for pid, slot in list(self.children.items()):
            overdue = self.slots.overdue(slot, now)
            if not overdue:
                continue
            for job_id, reason in overdue:
                self.slots.bury(job_id, reason)
            log.error("slot %s: consumer pid %s stopped answering past a hard deadline (%s); "
                      "killing it", slot, pid, ", ".join(f"{j}: {r}" for j, r in overdue))
            for job_id, _ in overdue:
                self.slots.untrack(slot, job_id)
            os.kill(pid, signal.SIGKILL)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if not self._stopping:
            log.info("supervisor got %s: draining consumers", signal.Signals(signum).name)
        self._stopping = True

    def _shutdown(self) -> None:
        for pid in list(self.children):
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.drain_timeout + SHUTDOWN_GRACE_S
        while self.children and time.monotonic() < deadline:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                time.sleep(0.05)
                continue
            self.children.pop(pid, None)
        for pid in list(self.children):
            log.error("consumer pid %s did not drain in time: SIGKILL", pid)
            _signal(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            self.children.pop(pid, None)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
