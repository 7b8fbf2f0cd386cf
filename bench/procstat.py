"""Where a process's time goes, from /proc, summed over a process tree and all its threads:
user and system CPU, time runnable but not running (waiting for a core: the scheduler's
`run_delay` in /proc/PID/task/TID/schedstat), and context switches, voluntary (it waited for
I/O or a lock) and involuntary (preempted).

Why both: py-spy and similar samplers count a thread the kernel shows runnable as busy, preempted
included; on two shared cores a process can look CPU-bound while it waits for a core. Time
waiting for a core is not CPU spent, and involuntary switches say who took the core from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from bench.harness import children

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    user_s: float = 0.0
    system_s: float = 0.0
    waiting_s: float = 0.0  # runnable, not running
    voluntary: int = 0  # context switches
    involuntary: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __sub__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.system_s


def usage(pid: int) -> Usage:
    """`pid` and its descendants, every thread. A process or thread that ended meanwhile is
    skipped (its CPU is then missing from a difference: keep the tree alive while measuring)."""
    total = Usage()
    for member in [pid, *children(pid)]:
        try:
            own = _cpu(Path(f"/proc/{member}/stat"))  # counts its ended threads too
            for task in Path(f"/proc/{member}/task").iterdir():
                own = own + _thread(task)
        except (OSError, IndexError, ValueError):
            continue
        total = total + own
    return total


def thread_usage(task: Path) -> Usage:
    """One thread (`/proc/PID/task/TID`): its CPU, time waiting for a core and switches."""
    return _cpu(task / "stat") + _thread(task)


def _cpu(stat: Path) -> Usage:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return Usage(user_s=int(fields[11]) / TICKS, system_s=int(fields[12]) / TICKS)


def _thread(task: Path) -> Usage:
    """A thread's waiting and switches (its CPU is in its `stat`: `_cpu`)."""
    run_delay_ns = int((task / "schedstat").read_text().split()[1])
    switches = {}
    for line in (task / "status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
            switches[key] = int(value)
    return Usage(waiting_s=run_delay_ns / 1e9,
                 voluntary=switches.get("voluntary_ctxt_switches", 0),
                 involuntary=switches.get("nonvoluntary_ctxt_switches", 0))


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU of these process trees, summed."""
    return sum(usage(pid).cpu_s for pid in pids)
