"""Where a process's CPU goes, by library: py-spy samples a running process, we group the
samples by the package of the innermost Python frame.

Used by `bench.rpc --profile`. py-spy (a dev dependency) needs ptrace: root, or
`kernel.yama.ptrace_scope=0`. Samples of threads waiting in the kernel are dropped (py-spy's
default), so the shares are shares of the CPU the process spent.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# The first matching pattern of the innermost frame's file names its group.
GROUPS: list[tuple[str, str]] = [
    (r"(?:^|/)aiormq/", "aiormq (AMQP frames, channel tasks)"),
    (r"(?:^|/)pamqp/", "pamqp (AMQP encode/decode)"),
    (r"(?:^|/)aio_pika/", "aio-pika"),
    (r"(?:^|/)uvicorn/", "uvicorn (HTTP protocol)"),
    (r"(?:^|/)httptools/", "httptools (HTTP parser)"),
    (r"(?:^|/)(starlette|fastapi)/", "starlette / fastapi"),
    (r"(?:^|/)prometheus_client/", "prometheus-client"),
    (r"(?:^|/)pydantic", "pydantic"),
    (r"(?:^|/)asyncio/", "asyncio (Python parts of the loop)"),
    (r"(?:^|/)uvloop/", "uvloop"),
    (r"(?:^|/)(gateway|workers|protocol|rpcfleet|examples)/", "rpcfleet's own code"),
]
LOOP = "event loop, in C (uvloop: polling, socket reads, callbacks)"
WRITES = "socket writes (the kernel's loopback TCP send, under StreamWriter.write)"
FRAME = re.compile(r"\((?P<file>[^:()]+):\d+\)$")


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return found if Path(found).exists() else None


class Recording:
    """py-spy sampling one process for a while; `counts()` waits for it and groups its samples."""

    def __init__(self, pid: int, seconds: float, rate: int = 250) -> None:
        spy = py_spy()
        if spy is None:
            raise RuntimeError("py-spy is missing: pip install py-spy")
        self.output = Path(tempfile.mkstemp(prefix=f"pyspy-{pid}-", suffix=".txt")[1])
        self._process = subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate",
             str(rate), "--format", "raw", "--output", str(self.output), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def counts(self, timeout: float = 60) -> Profile:
        _, errors = self._process.communicate(timeout=timeout)
        if self._process.returncode != 0:
            raise RuntimeError(f"py-spy failed: {errors.decode(errors='replace').strip()}")
        try:
            return shares(self.output.read_text())
        finally:
            self.output.unlink(missing_ok=True)


@dataclass
class Profile:
    groups: Counter[str] = field(default_factory=Counter)  # samples per library
    functions: Counter[str] = field(default_factory=Counter)  # per innermost Python function


def shares(collapsed: str) -> Profile:
    """Samples per group from py-spy's raw (collapsed) output: `frame;frame;... count`."""
    profile = Profile()
    for line in collapsed.splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        frames = stack.split(";")
        profile.groups[group_of(frames)] += int(number)
        profile.functions[frames[-1]] += int(number)
    return profile


def group_of(frames: list[str]) -> str:
    innermost = frames[-1]
    match = FRAME.search(innermost)
    path = match.group("file") if match else innermost
    if re.search(r"(?:^|/)asyncio/(runners|base_events)\.py", path) or "run_forever" in innermost:
        return LOOP  # only the loop's entry frame is on the stack: uvloop's C code runs
    if innermost.startswith("StreamWriter.write "):
        return WRITES  # aiormq's writer: uvloop sends at once, so this is the system call
    return next((name for pattern, name in GROUPS if re.search(pattern, path)), "other Python")


def report(title: str, profile: Profile, top: int = 8,
           print_: Callable[[str], None] = print) -> None:
    total = sum(profile.groups.values())
    if not total:
        print_(f"  {title}: no samples (py-spy could not attach?)")
        return
    print_(f"\n{title} ({total} samples)")
    for name, count in profile.groups.most_common():
        print_(f"  {count / total:6.1%}  {name}")
    print_("  innermost functions:")
    for name, count in profile.functions.most_common(top):
        print_(f"  {count / total:6.1%}  {name}")
