"""What the benchmarks share: a private broker, processes, PSS. Benchmarks print numbers; they
are not tests and assert nothing about speed."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rpcfleet.broker import LocalBroker, free_port
from workers.memory import pss_bytes

REPO = Path(__file__).resolve().parents[1]
RPCFLEET = [sys.executable, "-m", "rpcfleet.cli"]


@contextmanager
def private_broker(management: bool = False,
                   erl_args: tuple[str, ...] = ()) -> Iterator[LocalBroker]:
    with tempfile.TemporaryDirectory(prefix="rpcfleet-bench-") as folder:
        node = LocalBroker(Path(folder), port=free_port(),
                           management_port=free_port() if management else None, name="bench",
                           erl_args=erl_args)
        node.start()
        try:
            yield node
        finally:
            node.stop()


def post_script(path: Path, body: str) -> Path:
    """A wrk script POSTing the JSON `body` (a Lua long string: the JSON needs no escaping)."""
    if "]]" in body:
        raise ValueError("a body with ']]' would end the Lua long string")
    path.write_text(f"wrk.method = 'POST'\nwrk.body = [[{body}]]\n"
                    "wrk.headers['Content-Type'] = 'application/json'\n")
    return path


def env_with(**settings: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPCFLEET_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in settings.items()})
    return env


@contextmanager
def process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(p) for p in listing.read().split()]
    except OSError:
        return []


def tree_pss(pid: int) -> tuple[int, list[int]]:
    """PSS of a process and its children, in bytes, and the children's pids."""
    kids = children(pid)
    return sum(pss_bytes(p) or 0 for p in [pid, *kids]), kids


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)
