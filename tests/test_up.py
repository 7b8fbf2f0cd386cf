"""`rpcfleet up`, the README's first command: a broker, the gateway and the example pool that
answer real calls, and a clean stop on Ctrl-C."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from pathlib import Path

import httpx

from rpcfleet.broker import free_port
from tests.support.processes import RPCFLEET, Proc, child_env
from tests.support.waiting import wait_for


def test_up_serves_the_example_pool_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    port, amqp_port = free_port(), free_port()
    proc = Proc([*RPCFLEET, "up", "--port", str(port), "--amqp-port", str(amqp_port),
                 "--state-dir", str(tmp_path / "state"), "--processes", "1",
                 "--cache-mb", "16"], child_env("amqp://unused/"), tmp_path / "up.log")
    try:
        wait_for(lambda: "rpcfleet is up" in proc.output() or not proc.alive(), timeout=120,
                 what="rpcfleet up to be ready")
        output = proc.output()
        assert proc.alive(), output
        printed = re.search(r"curl -s (\S+/v1/rpc/nearest) .*-d '([^']+)'", output)
        assert printed is not None, output
        answer = httpx.post(printed.group(1), content=printed.group(2), timeout=30)
        assert answer.status_code == 200 and answer.json()["result"][0]["id"] == 42
        _every_printed_curl_works_as_printed(output)
        assert re.search(r"^ +gateway \| ", output, re.M)  # logs prefixed by component
        assert re.search(r"^ +workers \| ", output, re.M)
        proc.signal(signal.SIGINT)
        assert proc.wait(90) == 0
    finally:
        proc.stop()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", amqp_port)) != 0  # the broker it started is gone
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def _every_printed_curl_works_as_printed(output: str) -> None:
    """The quick start's commands, run by a shell exactly as printed, one after the other as a
    user pastes them (`-d` sends a form content type: the routes read JSON whatever it claims;
    the job's id travels in $JOB, set by the line that submits it)."""
    lines = [line.strip() for line in output.splitlines()
             if line.startswith(("  curl ", "  JOB="))]
    assert len(lines) == 8, lines
    assert not any("<" in line for line in lines), lines  # nothing to fill in by hand
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(lines)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "event: succeeded" in done.stdout, done.stdout  # the job's events, until it ended
    assert '"error":{' not in done.stdout, done.stdout
