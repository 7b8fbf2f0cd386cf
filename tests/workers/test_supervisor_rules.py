"""The supervisor's rules where the operating system refuses it: units of
workers.supervisor.Supervisor (real forks and kills: tests/workers/test_lifecycle.py)."""

from __future__ import annotations

import errno
import os

import pytest

from workers.memory import CacheInfo
from workers.settings import WorkerSettings
from workers.supervisor import Supervisor


def test_a_fork_the_system_refuses_waits_for_that_slot_and_the_pool_goes_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """EAGAIN (a cgroup's pids limit) or ENOMEM on one fork must not bring the supervisor down
    and drain every healthy consumer: the slot is tried again later, ever more slowly."""
    from tests.pools.basic import pool

    supervisor = Supervisor(pool, WorkerSettings(), host="h")

    def refused() -> int:
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    monkeypatch.setattr("workers.supervisor.os.fork", refused)
    info = CacheInfo(bytes=None, shape="none")
    supervisor._fork(0, None, info)
    first = supervisor._due[0] - supervisor._last_fork[0]
    supervisor._fork(0, None, info)
    second = supervisor._due[0] - supervisor._last_fork[0]
    assert supervisor.children == {}
    assert 0.9 < first < second


def test_hard_deadlines_do_not_follow_a_step_of_the_wall_clock(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An NTP step or a VM resumed moves the wall clock by minutes: no consumer running a job
    within its limit may be killed for it (the deadlines are on the monotonic clock, one for
    every process of the host)."""
    import time

    from workers.slots import SlotTable, clock_ms

    table = SlotTable(1)
    assert table.track(0, "j", 5_000, "time_limit")
    wall = time.time_ns()
    monkeypatch.setattr(time, "time_ns", lambda: wall + 3_600 * 10**9)  # an hour ahead
    assert table.overdue(0, clock_ms()) == []
    assert table.overdue(0, clock_ms() + 6_000) == [("j", "time_limit")]


def test_the_backstop_reads_the_deadlines_on_their_own_clock(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The supervisor compares them on the monotonic clock too: a wall clock an hour ahead kills
    no consumer whose job is within its limit."""
    import time

    from tests.pools.basic import pool

    supervisor = Supervisor(pool, WorkerSettings(), host="h")
    supervisor.children = {os.getpid(): 0}  # "a consumer": it must not be signalled
    supervisor.slots.track(0, "j", 5_000, "time_limit")
    wall = time.time_ns()
    monkeypatch.setattr(time, "time_ns", lambda: wall + 3_600 * 10**9)
    killed: list[int] = []
    monkeypatch.setattr("workers.supervisor.signal_quietly", lambda pid, sig: killed.append(pid))
    supervisor._backstop()
    assert killed == [] and supervisor.slots.tombstone("j") is None
