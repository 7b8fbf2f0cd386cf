"""Operator settings out of range are refused at start, by name, not at the first call (issue
22: `rpc_timeout_max=1e20` was a 500 at the first call)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from gateway.settings import GatewaySettings
from rpcfleet.broker import free_port
from tests.support.gateway import Gateway, wait_ready
from tests.support.processes import REPO, RPCFLEET, Proc, child_env
from tests.support.waiting import wait_for


@pytest.mark.parametrize("setting", [
    {"rpc_timeout_max": 1e20}, {"rpc_timeout_default": float("nan")},
    {"publish_timeout": float("inf")}, {"callback_window": 1e12}, {"port": 70000},
    {"heartbeat": 10**6}, {"job_retention": -1},
])
def test_absurd_values_are_refused(setting: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        GatewaySettings(**setting)  # type: ignore[arg-type]


def _refused(argv: list[str], **settings: object) -> str:
    """What the command said when it refused to start (exit 2) with these settings."""
    env = child_env("amqp://guest:guest@127.0.0.1:1/", **settings)
    done = subprocess.run([*RPCFLEET, *argv], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr
    return done.stderr.strip()


def test_the_cli_names_the_bad_setting_in_one_line() -> None:
    """By its variable; `rpcfleet gateway` has no flag for this one, so none is named."""
    assert _refused(["gateway", "--port", "0"], rpc_timeout_max="1e20") == (
        "rpcfleet gateway: invalid setting RPCFLEET_RPC_TIMEOUT_MAX='1e20': "
        "Input should be less than or equal to 86400")


def test_a_bad_setting_the_command_has_a_flag_for_names_the_flag_too() -> None:
    assert _refused(["gateway", "--port", "70000"]) == (
        "rpcfleet gateway: invalid setting RPCFLEET_PORT (--port)=70000: "
        "Input should be less than or equal to 65535")


def test_a_rule_across_settings_is_one_line_naming_them() -> None:
    assert _refused(["worker", "tests.pools.basic:pool"], processes="1..64") == (
        "rpcfleet worker: invalid settings: processes 1..64 is above max_processes (32; "
        "RPCFLEET_MAX_PROCESSES raises it)")


def test_a_callback_secret_of_the_wrong_form_is_one_line_before_the_gateway_starts(
    tmp_path: Path
) -> None:
    assert _refused(["gateway", "--port", "0"], callback_secret="not-a-secret",
                    state_dir=tmp_path) == (
        "rpcfleet gateway: RPCFLEET_CALLBACK_SECRET must look like whsec_<base64 key>")


def test_command_line_settings_reach_every_gateway_process_without_the_environment(
    amqp_url: str, tmp_path: Path
) -> None:
    """The environment names a broker nobody listens on; `--amqp-url` names the real one. Each
    uvicorn process builds its app from the settings the command resolved (issue 23 item 5:
    overrides were written into os.environ for the processes to read back)."""
    port = free_port()
    env = child_env("amqp://guest:guest@127.0.0.1:1/", state_dir=tmp_path)
    proc = Proc([*RPCFLEET, "gateway", "--port", str(port), "--workers", "2",
                 "--amqp-url", amqp_url], env, tmp_path / "gateway.log")
    try:
        gateway = Gateway(proc, f"http://127.0.0.1:{port}")
        wait_ready(gateway)  # one process is: the other may still be connecting
        answers: list[int] = []

        def every_process_ready() -> bool:
            # New connections spread over both processes: all answer once each one connected.
            answers[:] = [httpx.get(f"{gateway.url}/readyz", timeout=5).status_code
                          for _ in range(20)]
            return answers == [200] * 20

        wait_for(every_process_ready, timeout=30, what="both gateway processes to be ready",
                 detail=lambda: f"last answers: {answers}\n{proc.output()}")
        assert "127.0.0.1:1" not in proc.output()
    finally:
        proc.stop()
