"""`rpcfleet up`, the README's first command: a broker, the gateway and the example pool that
answer real calls, and a clean stop on Ctrl-C."""

from __future__ import annotations

import json
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
    """Each curl of the quick start, run by a shell exactly as printed (`-d` sends a form
    content type: the routes read JSON whatever it claims); `<id>` is the job the quick start's
    own job submission got."""
    lines = [line.strip() for line in output.splitlines() if line.startswith("  curl ")]
    commands = [c for line in lines for c in re.split(r"\s{2,}(?=curl )", line)]
    assert len(commands) == 8, commands
    job_id = ""
    for command in commands:
        run = command.replace("<id>", job_id)
        done = subprocess.run(run, shell=True, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (run, done.stderr)
        if command.startswith("curl -N"):  # the job's events, until it ends
            assert "event: succeeded" in done.stdout, done.stdout
            continue
        body = json.loads(done.stdout)
        assert not (isinstance(body, dict) and body.get("error")), (run, body)
        if "/v1/jobs/reindex" in command:
            job_id = body["id"]
