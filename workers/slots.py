"""Memory shared between the supervisor and its consumers, created before forking (MAP_SHARED).

Per slot: the prefetch in force (so a replacement keeps it), the jobs running with their hard
deadlines (so the supervisor can SIGKILL a consumer that stopped answering), what the consumer
holds now (what an elastic pool scales on, workers/scaling.py), and a small
ring of tombstones (jobs whose consumer was killed for a time limit or a cancel): a consumer that
receives one of them again answers it instead of running it again. For the pool: its process
range (a consumer that hears `set_processes` writes it; the supervisor applies it), the consumers
running, the pool queue's backlog as one consumer last saw it, and why the supervisor holds back a
consumer it would add.

The table has room for `capacity` slots (RPCFLEET_MAX_PROCESSES); an elastic pool uses a few.
"""

from __future__ import annotations

import ctypes
import mmap
import time

JOB_ID_BYTES = 64
RUNNING_PER_SLOT = 16  # jobs tracked per consumer at least (more when they may run at once)
TOMBSTONES = 512  # recent killed jobs remembered per host; older ones are long redelivered


def clock_ms() -> int:
    """The hard deadlines' clock: monotonic, and one for every process of a host
    (CLOCK_MONOTONIC), so a step of the wall clock (NTP, a VM resumed) kills nobody."""
    return time.monotonic_ns() // 1_000_000


class _Running(ctypes.Structure):
    _fields_ = [
        ("job_id", ctypes.c_char * JOB_ID_BYTES),
        ("hard_deadline_ms", ctypes.c_int64),  # 0: free entry
        ("reason", ctypes.c_char * 16),  # time_limit or cancelled
    ]


def _slot_type(running: int) -> type[ctypes.Structure]:
    """A slot with room for `running` tracked jobs (sized per pool: `SlotTable`)."""
    class _Slot(ctypes.Structure):
        _fields_ = [
            ("pid", ctypes.c_int32),
            ("serving", ctypes.c_int32),  # the pid of the consumer once it takes messages
            ("prefetch", ctypes.c_int32),  # 0: not set yet, use the configured default
            ("prefetch_auto", ctypes.c_int32),
            ("in_flight", ctypes.c_int32),  # deliveries the consumer holds now
            ("running", _Running * running),
        ]
    return _Slot


class _Pool(ctypes.Structure):
    _fields_ = [
        ("min", ctypes.c_int32),
        ("max", ctypes.c_int32),
        ("now", ctypes.c_int32),  # consumers running (retiring ones excluded)
        ("backlog", ctypes.c_int64),  # ready messages in the pool queue
        ("backlog_at_ms", ctypes.c_int64),  # when a consumer read it (0: never)
        ("held_back", ctypes.c_char * 120),
        ("added", ctypes.c_int64),  # consumers the scaler added since the supervisor started
        ("retired", ctypes.c_int64),
        ("last_at_ms", ctypes.c_int64),  # the last decision (0: none yet)
        ("last_change", ctypes.c_int32),
        ("last_why", ctypes.c_char * 160),
    ]


class _Tombstone(ctypes.Structure):
    _fields_ = [
        ("job_id", ctypes.c_char * JOB_ID_BYTES),
        ("reason", ctypes.c_char * 16),
    ]


class SlotTable:
    """The shared table. Each slot's fields have one writer (its consumer), except `pid` and the
    tombstones, which only the supervisor writes."""

    def __init__(self, capacity: int, running: int = RUNNING_PER_SLOT) -> None:
        """`capacity` slots, each tracking up to `running` jobs at once: every request a
        consumer may run at once (its handler slots times its largest batch) must fit, or a
        request killed past its limit has no tombstone and runs again (`running_for`)."""
        self.count = capacity
        self.running_per_slot = running
        slot_type = _slot_type(running)
        size = (ctypes.sizeof(slot_type) * capacity + ctypes.sizeof(_Tombstone) * TOMBSTONES
                + 8 + ctypes.sizeof(_Pool))
        self._map = mmap.mmap(-1, size)  # anonymous + MAP_SHARED: children see our writes
        self._slots = (slot_type * capacity).from_buffer(self._map)
        offset = ctypes.sizeof(slot_type) * capacity
        self._tombs = (_Tombstone * TOMBSTONES).from_buffer(self._map, offset)
        # Where this process put each job it tracks: the hot path skips a scan of the slot.
        self._where: dict[tuple[int, str], int] = {}
        offset += ctypes.sizeof(_Tombstone) * TOMBSTONES
        self._next_tomb = ctypes.c_int64.from_buffer(self._map, offset)
        self._pool = _Pool.from_buffer(self._map, offset + 8)

    # -- the pool (elastic pools) -------------------------------------------------------------
    def process_range(self) -> tuple[int, int]:
        return int(self._pool.min), int(self._pool.max)

    def set_process_range(self, least: int, most: int) -> None:
        self._pool.min, self._pool.max = least, most

    def running_now(self) -> int:
        return int(self._pool.now)

    def set_running_now(self, count: int) -> None:
        self._pool.now = count

    def backlog(self, now_ms: int, max_age_ms: int) -> int | None:
        """The pool queue's ready messages as a consumer last read them; None when that is
        older than `max_age_ms` (or never happened)."""
        at = int(self._pool.backlog_at_ms)
        return int(self._pool.backlog) if at and now_ms - at <= max_age_ms else None

    def set_backlog(self, ready: int, at_ms: int) -> None:
        self._pool.backlog = ready
        self._pool.backlog_at_ms = at_ms

    def held_back(self) -> str | None:
        return self._pool.held_back.decode() or None

    def set_held_back(self, why: str | None) -> None:
        self._pool.held_back = (why or "").encode()[:119]

    def record_decision(self, change: int, why: str, at_ms: int) -> None:
        pool = self._pool
        if change > 0:
            pool.added += change
        else:
            pool.retired -= change
        pool.last_change, pool.last_why = change, why.encode()[:159]
        pool.last_at_ms = at_ms

    def decisions(self) -> tuple[int, int, tuple[int, int, str] | None]:
        """(added, retired, the last decision as (at ms, change, why) or None)."""
        pool = self._pool
        last = ((int(pool.last_at_ms), int(pool.last_change), pool.last_why.decode())
                if pool.last_at_ms else None)
        return int(pool.added), int(pool.retired), last

    def in_flight(self, slot: int) -> int:
        return int(self._slots[slot].in_flight)

    def set_in_flight(self, slot: int, count: int) -> None:
        self._slots[slot].in_flight = count

    def reporter(self) -> int | None:
        """The lowest slot whose consumer serves: the one that reads the pool queue's backlog."""
        return next((i for i in range(self.count)
                     if self._slots[i].serving and self._slots[i].serving == self._slots[i].pid),
                    None)

    # -- prefetch -----------------------------------------------------------------------------
    def prefetch(self, slot: int) -> tuple[int, bool]:
        entry = self._slots[slot]
        return int(entry.prefetch), bool(entry.prefetch_auto)

    def inherit_prefetch(self, slot: int, live: list[int]) -> None:
        """A new consumer in `slot` takes the pool's prefetch in force (a live one's), not its
        slot's last value nor the configured default."""
        value, auto = next((self.prefetch(s) for s in live if self.prefetch(s)[0]), (0, False))
        self.set_prefetch(slot, value, auto)

    def set_prefetch(self, slot: int, value: int, auto: bool) -> None:
        self._slots[slot].prefetch = value
        self._slots[slot].prefetch_auto = int(auto)

    def set_pool_prefetch(self, value: int | None, auto: bool) -> None:
        """A pool-wide prefetch command, for every slot of the host (`value` None: each keeps
        its value, under `auto`)."""
        for slot in range(self.count):
            self.set_prefetch(slot, value or self.prefetch(slot)[0], auto)

    # -- liveness and running jobs ------------------------------------------------------------
    def set_pid(self, slot: int, pid: int) -> None:
        """A new consumer in `slot` (0: the slot is empty now)."""
        entry = self._slots[slot]
        entry.pid = pid
        entry.serving = 0
        entry.in_flight = 0
        self._where = {key: i for key, i in self._where.items() if key[0] != slot}
        for running in entry.running:
            running.hard_deadline_ms = 0

    def set_serving(self, slot: int, pid: int) -> None:
        self._slots[slot].serving = pid

    def pid(self, slot: int) -> int:
        return int(self._slots[slot].pid)

    def serving(self, slot: int) -> int:
        """The pid of the slot's consumer once it has subscribed; 0 before."""
        return int(self._slots[slot].serving)

    def track(self, slot: int, job_id: str, within_ms: int, reason: str) -> bool:
        """Record a job the supervisor must kill for if it is still running `within_ms` from
        now (on `clock_ms`)."""
        hard_deadline_ms = clock_ms() + within_ms
        entries = self._slots[slot].running
        index = self._where.get((slot, job_id))
        if index is None:
            index = next((i for i, r in enumerate(entries) if r.hard_deadline_ms == 0), None)
            if index is None:
                return False
            self._where[(slot, job_id)] = index
        entry = entries[index]
        entry.job_id = job_id.encode()[:JOB_ID_BYTES]
        entry.reason = reason.encode()[:16]
        entry.hard_deadline_ms = hard_deadline_ms
        return True

    def untrack(self, slot: int, job_id: str) -> None:
        index = self._where.pop((slot, job_id), None)
        entries = self._slots[slot].running
        if index is not None:
            entries[index].hard_deadline_ms = 0
            return
        key = job_id.encode()[:JOB_ID_BYTES]
        for running in entries:
            if running.job_id == key:
                running.hard_deadline_ms = 0

    def overdue(self, slot: int, now_ms: int) -> list[tuple[str, str]]:
        """(job id, reason) of the jobs of `slot` past their hard deadline at `now_ms` (on
        `clock_ms`)."""
        return [
            (r.job_id.decode(), r.reason.decode())
            for r in self._slots[slot].running
            if r.hard_deadline_ms and r.hard_deadline_ms < now_ms
        ]

    # -- tombstones ---------------------------------------------------------------------------
    def bury(self, job_id: str, reason: str) -> None:
        index = self._next_tomb.value % TOMBSTONES
        self._tombs[index].job_id = job_id.encode()[:JOB_ID_BYTES]
        self._tombs[index].reason = reason.encode()[:16]
        self._next_tomb.value += 1

    def tombstone(self, job_id: str) -> str | None:
        key = job_id.encode()[:JOB_ID_BYTES]
        for tomb in self._tombs:
            if tomb.job_id == key:
                return str(tomb.reason.decode())
        return None


def running_for(concurrency: int, batches: list[int]) -> int:
    """Room for every request one consumer may run at once: its handler slots, each holding
    a batch of the largest size its pool declares (plain methods: one)."""
    return max(RUNNING_PER_SLOT, concurrency * max([1, *batches]))
