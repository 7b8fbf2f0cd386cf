"""Memory shared between the supervisor and its consumers, created before forking (MAP_SHARED).

Per slot: the prefetch in force (so a replacement keeps it), the jobs running with their hard
deadlines (so the supervisor can SIGKILL a consumer that stopped answering), and a small ring of
tombstones (jobs whose consumer was killed for a time limit or a cancel): a consumer that receives
one of them again answers it instead of running it again.
"""

from __future__ import annotations

import ctypes
import mmap
from collections.abc import Iterator

JOB_ID_BYTES = 64
RUNNING_PER_SLOT = 16  # jobs tracked per consumer; more concurrent handlers go untracked
TOMBSTONES = 512  # recent killed jobs remembered per host; older ones are long redelivered


class _Running(ctypes.Structure):
    _fields_ = [
        ("job_id", ctypes.c_char * JOB_ID_BYTES),
        ("hard_deadline_ms", ctypes.c_int64),  # 0: free entry
        ("reason", ctypes.c_char * 16),  # time_limit or cancelled
    ]


class _Slot(ctypes.Structure):
    _fields_ = [
        ("pid", ctypes.c_int32),
        ("serving", ctypes.c_int32),  # the pid of the consumer once it takes messages
        ("prefetch", ctypes.c_int32),  # 0: not set yet, use the configured default
        ("prefetch_auto", ctypes.c_int32),
        ("running", _Running * RUNNING_PER_SLOT),
    ]


class _Tombstone(ctypes.Structure):
    _fields_ = [
        ("job_id", ctypes.c_char * JOB_ID_BYTES),
        ("reason", ctypes.c_char * 16),
    ]


class SlotTable:
    """The shared table. Each slot's fields have one writer (its consumer), except `pid` and the
    tombstones, which only the supervisor writes."""

    def __init__(self, slots: int) -> None:
        self.count = slots
        size = ctypes.sizeof(_Slot) * slots + ctypes.sizeof(_Tombstone) * TOMBSTONES + 8
        self._map = mmap.mmap(-1, size)  # anonymous + MAP_SHARED: children see our writes
        self._slots = (_Slot * slots).from_buffer(self._map)
        offset = ctypes.sizeof(_Slot) * slots
        self._tombs = (_Tombstone * TOMBSTONES).from_buffer(self._map, offset)
        # Where this process put each job it tracks: the hot path skips a scan of the slot.
        self._where: dict[tuple[int, str], int] = {}
        self._next_tomb = ctypes.c_int64.from_buffer(
            self._map, offset + ctypes.sizeof(_Tombstone) * TOMBSTONES
        )

    # -- prefetch -----------------------------------------------------------------------------
    def prefetch(self, slot: int) -> tuple[int, bool]:
        entry = self._slots[slot]
        return int(entry.prefetch), bool(entry.prefetch_auto)

    def set_prefetch(self, slot: int, value: int, auto: bool) -> None:
        self._slots[slot].prefetch = value
        self._slots[slot].prefetch_auto = int(auto)

    # -- liveness and running jobs ------------------------------------------------------------
    def set_pid(self, slot: int, pid: int) -> None:
        entry = self._slots[slot]
        entry.pid = pid
        entry.serving = 0
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

    def track(self, slot: int, job_id: str, hard_deadline_ms: int, reason: str) -> bool:
        """Record a job the supervisor must kill for if it is still running past the deadline."""
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
        """(job id, reason) of the jobs of `slot` past their hard deadline."""
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

    def slots(self) -> Iterator[int]:
        return iter(range(self.count))
