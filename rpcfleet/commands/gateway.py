"""`rpcfleet gateway`: the HTTP gateway under uvicorn, each process with its own connection."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

HELP = "run the HTTP gateway: rpcfleet gateway --port 8000 --workers N"


SETTINGS = ("host", "port", "workers", "amqp_url")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gateway.settings import GatewaySettings
    from rpcfleet.commands.options import add_setting_options

    add_setting_options(parser, GatewaySettings, SETTINGS)
    parser.add_argument("--log-level", default="info")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.settings import GatewaySettings
    from rpcfleet.commands.options import setting_overrides

    overrides = setting_overrides(args, SETTINGS)
    settings = GatewaySettings(**overrides)
    # Each uvicorn worker builds its app from the environment: hand the overrides down.
    for key, value in overrides.items():
        os.environ[f"RPCFLEET_{key.upper()}"] = str(value)
    with shared_metrics(settings.workers):
        uvicorn.run("gateway.app:app_from_env", factory=True, host=settings.bind_host(),
                    port=settings.port, workers=settings.workers, log_level=args.log_level,
                    access_log=False, loop="auto", http="auto", timeout_graceful_shutdown=10)
    return 0


@contextmanager
def shared_metrics(workers: int) -> Iterator[None]:
    """Several processes: a fresh prometheus-client multiprocess directory for this run, so
    /metrics sums them all (a directory the user set is used as is: wipe it between runs)."""
    from gateway.metrics import MULTIPROC_ENV

    if workers < 2 or os.environ.get(MULTIPROC_ENV):
        yield
        return
    directory = tempfile.mkdtemp(prefix="rpcfleet-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    try:
        yield
    finally:
        shutil.rmtree(directory, ignore_errors=True)
