"""`rpcfleet gateway`: the HTTP gateway under uvicorn, each process with its own connection."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from gateway.settings import GatewaySettings

HELP = "run the HTTP gateway: rpcfleet gateway --port 8000 --workers N"


SETTINGS = ("host", "port", "workers", "amqp_url")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gateway.settings import GatewaySettings
    from rpcfleet.commands.options import add_setting_options

    add_setting_options(parser, GatewaySettings, SETTINGS)
    parser.add_argument("--log-level", default="info",
                        choices=["critical", "error", "warning", "info", "debug", "trace"])


def run(args: argparse.Namespace) -> int:
    from gateway.lean import import_web_framework
    from gateway.settings import GatewaySettings
    from rpcfleet.commands.options import setting_overrides

    import_web_framework()  # before anything imports FastAPI: see gateway.lean
    overrides = setting_overrides(args, SETTINGS)
    settings = GatewaySettings(**overrides)
    problem = startup_problem(settings)
    if problem is not None:
        print(f"rpcfleet gateway: {problem}", file=sys.stderr)
        return 2
    raise_open_file_limit()
    with shared_metrics(settings.workers):
        serve(settings, args.log_level)
    return 0


def startup_problem(settings: GatewaySettings) -> str | None:
    """Why the gateway cannot start, said once in one line before any process starts: a
    callback secret of the wrong form, a store copied from another (its id would clash on the
    broker), or a job store URL of the wrong kind."""
    import asyncio

    from gateway.jobs.running import open_store
    from gateway.store.identity import StoreCopied
    from gateway.webhooks.signing import SecretError, Signer

    if settings.callback_secret:
        try:
            Signer(settings.callback_secret)
        except SecretError as exc:
            return str(exc)

    async def check() -> None:
        store = await open_store(settings)
        await store.close()

    try:
        asyncio.run(check())
    except (StoreCopied, ValueError) as exc:
        return str(exc)
    except Exception:  # e.g. the database not answering yet: each process's own start
        pass  # reports it and waits for it, as before this check existed
    return None


def raise_open_file_limit() -> None:
    """Each connection is a file: take the hard limit the system allows (often 1,024 soft of
    524,288 hard), so a gateway holding thousands of connections (WebSocket followers, a burst
    the connection limit answers) does not fail to accept them."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            pass  # the system says no: serve within the soft limit


def serve(settings: GatewaySettings, log_level: str) -> None:
    """uvicorn, one process or a supervisor of several. On SIGTERM each process stops
    listening, finishes the requests it holds (up to 10 s), then closes its connection."""
    from functools import partial

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from gateway.writes import OneWriteHttpToolsProtocol

    class Supervisor(Multiprocess):
        def terminate_all(self) -> None:
            # uvicorn's supervisor keeps its copy of the listening socket open until its
            # processes have drained: meanwhile the kernel queued new connections nobody would
            # accept, then reset them all at exit. Closed first, new connections are refused
            # at once (a definite failure) once the processes stop listening.
            for sock in self.sockets:
                sock.close()
            super().terminate_all()

    # The factory carries the settings as resolved here (uvicorn pickles its config into each
    # process it spawns): command-line overrides reach every process without the environment.
    config = uvicorn.Config(partial(serving_app, settings), factory=True,
                            host=settings.bind_host(), port=settings.port,
                            workers=settings.workers, log_level=log_level, access_log=False,
                            loop="auto",
                            http=OneWriteHttpToolsProtocol,  # one write per response
                            # websockets' Sans-I/O protocol: uvicorn's legacy one is deprecated
                            ws="websockets-sansio", timeout_graceful_shutdown=10)
    if settings.workers > 1:
        Supervisor(config, sockets=[config.bind_socket()]).run()
    else:
        uvicorn.Server(config).run()


def serving_app(settings: GatewaySettings) -> ASGIApp:
    """The app each gateway process serves (uvicorn's factory). A spawned process imports this
    module to unpickle it, so FastAPI is first imported here, the lean way (gateway.lean)."""
    from gateway.lean import import_web_framework

    import_web_framework()
    from gateway.app import app_for

    return app_for(settings)


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
