"""Real processes under test: `rpcfleet worker` / `rpcfleet gateway` started as the user would."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import aio_pika

from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
RPCFLEET = [sys.executable, "-m", "rpcfleet.cli"]


class Proc:
    """A child process whose output goes to a file the test can read back on failure."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._log_file = open(log, "wb")  # closed in stop()
        self.popen = subprocess.Popen(
            list(argv), env=env, cwd=REPO, stdout=self._log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._log_file.close()
        return self.popen.returncode


def child_env(amqp_url: str, **settings: object) -> dict[str, str]:
    """Environment of a child: the caller's, minus RPCFLEET_*, plus the given settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPCFLEET_")}
    env["RPCFLEET_AMQP_URL"] = amqp_url
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in settings.items():
        env[f"RPCFLEET_{key.upper()}"] = str(value)
    return env


async def _consumer_count(amqp_url: str, queue: str) -> int:
    # A plain (not robust) connection: a robust channel caches DeclareOk and shows stale counts.
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            return 0
        return int(declared.declaration_result.consumer_count or 0)


def consumer_count(amqp_url: str, queue: str) -> int:
    """Live consumer count; callable from sync code and from inside a running loop alike."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _consumer_count(amqp_url, queue)).result()


def wait_consumers(amqp_url: str, queue: str, count: int, timeout: float = 30.0,
                   proc: Proc | None = None) -> None:
    wait_for(lambda: consumer_count(amqp_url, queue) >= count, timeout=timeout, interval=0.1,
             what=f"{queue} to reach {count} consumers",
             abort=None if proc is None else lambda: exited(proc),
             detail=None if proc is None else proc.output)


def exited(proc: Proc) -> str | None:
    """Why waiting on `proc` is pointless (it exited), or None."""
    return None if proc.alive() else f"the process exited early:\n{proc.output()}"


@contextmanager
def running(argv: Sequence[str], env: dict[str, str], log: Path) -> Iterator[Proc]:
    proc = Proc(argv, env, log)
    try:
        yield proc
    finally:
        proc.stop()
