"""The supervisor: loads the cache ONCE, forks the consumers that share it, replaces the dead,
and, for an elastic pool (`--processes MIN..MAX`), adds and retires consumers as the load asks
(workers/scaling.py decides; the consumers report through the slot table, workers/slots.py).

New handler code without a cache reload: on SIGHUP (or, with `--reload`, when the pool's module
file changes) it imports the module again and replaces the consumers one at a time, each once the
one before it serves again, so at most one consumer's capacity is away at any moment.

It runs no event loop and holds no AMQP connection (a forked loop leaks its signal wakeup fd into
the children). Its only other duty is the backstop: a consumer still running a job past its hard
deadline (time limit or cancel + grace) gets SIGKILL, and the job gets a tombstone so whichever
consumer receives it again answers it instead of running it again.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from types import FrameType

from protocol import backoff
from protocol.clock import now_ms
from workers.consumer.claims import EXIT_CLASH
from workers.consumer.recycle import EXIT_RECYCLE
from workers.consumer.runtime import EXIT_RETIRED
from workers.consumer.state import ConsumerSetup
from workers.memory import CacheInfo, no_room_for_one
from workers.pool import Pool
from workers.preparing import (
    EXIT_GAVE_UP,
    NotStarting,
    before_forking,
    claimed_elsewhere,
    prepare,
)
from workers.process import EXIT_CACHE, describe_exit, run_in_child, signal_quietly
from workers.rollout import Rollout
from workers.scaling import Decision, Sample, Scaler
from workers.settings import WorkerSettings
from workers.slots import SlotTable, clock_ms, running_for

log = logging.getLogger("rpcfleet.supervisor")

WATCH_INTERVAL_S = 0.2  # how often deaths and overdue jobs are checked
RESPAWN_BACKOFF_S = 1.0  # a slot whose consumer dies at once is not re-forked in a tight loop
# A cache loader that raises in the consumers (--no-preload): tried again after 1, 2, 4, 8 s,
# then the pool gives up (exit EXIT_GAVE_UP) rather than fork and fail once a second forever.
CACHE_ATTEMPTS = 5
CACHE_BACKOFF_MAX_S = 30.0
# A consumer that dies before it serves (the broker not up yet, refused credentials): its slot is
# forked again after 1, 2, 4 ... s, at most this long apart, until one serves.
CRASH_BACKOFF_MAX_S = 30.0
SHUTDOWN_GRACE_S = 10.0  # beyond the consumers' drain timeout, before SIGKILL
BACKLOG_FRESH_MS = 3000  # a backlog read longer ago than this is not known (its reader left)
HELD_BACK_CLEARS_S = 10.0  # "held back" stays said this long after the last time it was


class Supervisor:
    def __init__(self, pool: Pool, settings: WorkerSettings, host: str | None = None,
                 target: str | None = None, watch: bool = False) -> None:
        self.pool = pool
        self.rollout = Rollout.of(target, watch)  # new code, same cache
        self.settings = settings
        self.host = host or socket.gethostname()
        self.slots = SlotTable(settings.max_processes, running_for(
            settings.concurrency, [h.batch for h in pool.handlers.values() if h.batch]))
        self.slots.set_process_range(settings.processes.min, settings.processes.max)
        self.children: dict[int, int] = {}  # pid -> slot
        self.active: set[int] = set()  # slots that have a consumer (or one about to be forked)
        self._retiring: set[int] = set()  # slots whose consumer drains to leave for good
        self.scaler = Scaler(settings.scale_idle)
        self._held_back_at: float | None = None
        self._stopping = False
        self._exit_code = 0
        self._due: dict[int, float] = {}  # slot -> when to fork its replacement (monotonic)
        # Per slot: cache loads failed in a row (--no-preload), consumers dead before serving.
        self._cache_failures: dict[int, int] = {}
        self._early_deaths: dict[int, int] = {}
        self._last_fork: dict[int, float] = {}

    def run(self) -> int:
        try:
            cache, info = prepare(self.pool, self.settings)
        except NotStarting as exc:
            return exc.code
        before_forking(self.pool)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        for slot in range(self.settings.processes.min):
            self.active.add(slot)
            self._fork(slot, cache, info)
        self.slots.set_running_now(len(self.active))
        try:
            self._watch(cache, info)
        finally:
            self._shutdown()
        return self._exit_code

    def _fork(self, slot: int, cache: object, info: CacheInfo) -> None:
        self._last_fork[slot] = time.monotonic()
        setup = ConsumerSetup(pool=self.pool, cache=cache, cache_info=info,
                              settings=self.settings, slot=slot, slots=self.slots,
                              host=self.host)
        try:
            pid = os.fork()
        except OSError as exc:  # EAGAIN (a pids limit), ENOMEM: this slot waits, the pool serves
            pause = self._died_early(slot)
            log.error("slot %s: could not fork a consumer (%s); trying again in %.0f s", slot,
                      exc, pause)
            self._due[slot] = time.monotonic() + pause
            return
        if pid == 0:
            run_in_child(setup)  # never returns
        self.slots.set_pid(slot, pid)
        self.children[pid] = slot
        log.info("slot %s: consumer pid %s", slot, pid)

    def _watch(self, cache: object, info: CacheInfo) -> None:
        while not self._stopping:
            self._reap()
            self._respawn_due(cache, info)
            self._scale(cache, info)
            self._backstop()
            self._reload_step()
            time.sleep(WATCH_INTERVAL_S)

    def _reap(self) -> None:
        """Collect exited consumers; schedule each slot's replacement (`_due`)."""
        while self.children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            slot = self.children.pop(pid, None)
            if slot is None or self._stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            if slot in self._retiring:
                self._retiring.discard(slot)
                self._vacate(slot)
                log.info("slot %s: consumer pid %s retired (%s)", slot, pid,
                         describe_exit(status))
                continue
            if code == EXIT_RETIRED:
                if self._exit_code == 0 and not self._stopping:
                    log.info("pool %s was retired: stopping its consumers and leaving",
                             self.pool.name)
                self._stop_with(0)
                continue
            if code == EXIT_CLASH:
                log.error("slot %s: consumer pid %s found a method of pool %s taken by another "
                          "pool (its log says which): stopping the pool", slot, pid,
                          self.pool.name)
                self._stop_with(EXIT_CLASH)
                continue
            now = time.monotonic()
            if code == EXIT_CACHE:
                failures = self._cache_failures[slot] = self._cache_failures.get(slot, 0) + 1
                if failures >= CACHE_ATTEMPTS:
                    log.error("pool %s: the cache loader failed %s times in a row (the lines "
                              "above say why): giving up", self.pool.name, failures)
                    self._stop_with(EXIT_GAVE_UP)
                    continue
                pause = backoff.ceiling(failures, RESPAWN_BACKOFF_S, CACHE_BACKOFF_MAX_S)
                log.warning("slot %s: the cache loader failed in consumer pid %s (%s of %s); "
                            "trying again in %.0f s", slot, pid, failures, CACHE_ATTEMPTS, pause)
                self._due[slot] = now + pause
                continue
            self._cache_failures.pop(slot, None)  # this consumer got past its cache
            pause = RESPAWN_BACKOFF_S
            if self.slots.serving(slot) == pid:
                self._early_deaths.pop(slot, None)
            elif code not in (EXIT_RECYCLE, 0):  # died before it served: back off
                pause = self._died_early(slot)
            if code == EXIT_RECYCLE:
                log.info("slot %s: consumer pid %s recycled; forking a fresh one", slot, pid)
            elif self.rollout.drained_for_new_code(pid):
                log.info("slot %s: consumer pid %s drained; forking one with the new code",
                         slot, pid)
            else:
                log.warning("slot %s: consumer pid %s exited (%s); forking a replacement%s",
                            slot, pid, describe_exit(status),
                            f" in {pause:.0f} s (it died before serving)"
                            if pause > RESPAWN_BACKOFF_S else "")
            self._due[slot] = max(now, self._last_fork.get(slot, 0.0) + pause)

    def _died_early(self, slot: int) -> float:
        """A consumer of `slot` died before serving, or could not be forked: the pause before
        the next, growing with each in a row (reset once one serves)."""
        deaths = self._early_deaths[slot] = self._early_deaths.get(slot, 0) + 1
        return backoff.ceiling(deaths, RESPAWN_BACKOFF_S, CRASH_BACKOFF_MAX_S)

    def _respawn_due(self, cache: object, info: CacheInfo) -> None:
        now = time.monotonic()
        for slot, at in sorted(self._due.items()):
            if at <= now and not self._stopping:
                del self._due[slot]
                self._fork(slot, cache, info)

    # -- elastic pools -------------------------------------------------------------------------
    def _scale(self, cache: object, info: CacheInfo) -> None:
        """Sample what the consumers hold and the queue's backlog; apply the scaler's decision."""
        if self._stopping:
            return
        least, most = self.slots.process_range()
        at = time.monotonic()
        live = sorted(self.active - self._retiring)
        busy = sum(self.slots.in_flight(slot) > 0 for slot in live)
        backlog = self.slots.backlog(now_ms(), BACKLOG_FRESH_MS)
        self.scaler.observe(Sample(at, len(live), busy, backlog))
        decision = self.scaler.decide(at, len(live), least, most)
        if decision is not None:
            self._apply(decision, live, cache, info)
        if self._held_back_at is not None and at - self._held_back_at > HELD_BACK_CLEARS_S:
            self._held_back_at = None
            self.slots.set_held_back(None)
        self.slots.set_running_now(len(self.active - self._retiring))

    def _apply(self, decision: Decision, live: list[int], cache: object,
               info: CacheInfo) -> None:
        done = 0
        if decision.change < 0:
            # Idle consumers first (the highest slot among them), a busy one only when none is
            # idle: a retirement drains what runs within RPCFLEET_DRAIN_TIMEOUT, and a long
            # handler cut there runs again elsewhere.
            retiring = sorted((slot for slot in live if not self.rollout.is_replacing(slot)),
                              key=lambda slot: (self.slots.in_flight(slot) > 0, -slot))
            for slot in retiring[:-decision.change]:
                log.info("pool %s: retiring the consumer of slot %s (%s)", self.pool.name, slot,
                         decision.why)
                self._retire(slot)
                done -= 1
        for _ in range(max(decision.change, 0)):
            free = [slot for slot in range(self.slots.count) if slot not in self.active]
            if not free or not self._room_for_one():
                break
            slot = free[0]
            self.slots.inherit_prefetch(slot, live)
            self.active.add(slot)
            log.info("pool %s: adding a consumer in slot %s (%s)", self.pool.name, slot,
                     decision.why)
            self._fork(slot, cache, info)
            done += 1
        if done:
            self.slots.record_decision(done, decision.why, now_ms())

    def _retire(self, slot: int) -> None:
        """A graceful leave: no new deliveries, what it holds finished and acked (SIGTERM)."""
        pid = self.slots.pid(slot)
        if pid in self.children:
            self._retiring.add(slot)
            signal_quietly(pid, signal.SIGTERM)
        else:  # dead and waiting for its replacement: none comes
            self._due.pop(slot, None)
            self._vacate(slot)

    def _vacate(self, slot: int) -> None:
        self.active.discard(slot)
        self.slots.set_pid(slot, 0)

    def _room_for_one(self) -> bool:
        """Never fork past the host's free memory (workers.memory.no_room_for_one)."""
        why = no_room_for_one(list(self.children), self.settings.scale_memory_margin_mb << 20)
        if why is None:
            return True
        if self._held_back_at is None:
            log.warning("pool %s: not adding a consumer: %s", self.pool.name, why)
        self._held_back_at = time.monotonic()
        self.slots.set_held_back(why)
        return False

    def _stop_with(self, code: int) -> None:
        self._exit_code = code
        self._stopping = True

    def _backstop(self) -> None:
        now = clock_ms()
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

    # -- new code, same cache (workers.rollout) ------------------------------------------------
    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        del signum, frame
        self.rollout.requested = True

    def _reload_step(self) -> None:
        if self.rollout.due() and (pool := self.rollout.load(self.pool)) is not None:
            # New code announcing a method another live pool serves: its first consumer would
            # find it claimed and stop the whole pool (exit 78). Refused before anything rolls.
            clash = claimed_elsewhere(pool, self.settings)
            if clash is not None:
                log.error("new code refused, the consumers serve on with the code they run: "
                          "%s", clash)
                return
            self.pool = pool
            before_forking(self.pool)
            self.rollout.start(self.active - self._retiring)
            log.info("reloaded %s (methods: %s); replacing %s consumers one at a time, same "
                     "cache", self.rollout.target, ", ".join(pool.methods),
                     len(self.rollout.waiting))
        pid = self.rollout.next_to_drain(self.slots, self.children)
        if pid is not None:
            signal_quietly(pid, signal.SIGTERM)  # drains, exits; _reap schedules the new code

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if not self._stopping:
            log.info("supervisor got %s: draining consumers", signal.Signals(signum).name)
        self._stopping = True

    def _shutdown(self) -> None:
        for pid in list(self.children):
            signal_quietly(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.drain_timeout + SHUTDOWN_GRACE_S
        while self.children and time.monotonic() < deadline:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                time.sleep(0.05)
                continue
            self.children.pop(pid, None)
        for pid in list(self.children):
            log.error("consumer pid %s did not drain in time: SIGKILL", pid)
            signal_quietly(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            self.children.pop(pid, None)
