"""`rpcfleet worker MODULE:POOL`: load the pool's cache once, fork and supervise its consumers."""

from __future__ import annotations

import argparse
import logging
import os

HELP = ("run a worker pool: rpcfleet worker package.module:pool --processes N (or MIN..MAX) "
        "--prefetch P")

# Native thread pools sized to the host in every consumer would oversubscribe the cores N times.
NATIVE_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                      "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


SETTINGS = ("processes", "max_processes", "scale_idle", "prefetch", "concurrency", "amqp_url",
            "heartbeat", "queue_type", "max_messages", "max_private_mb", "preload",
            "cap_native_threads", "log_level")
FLAGS = {"cap_native_threads": "--no-cap-threads"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from rpcfleet.commands.options import add_setting_options
    from workers.settings import WorkerSettings

    parser.add_argument("target", metavar="MODULE:POOL", help="e.g. examples.vectors:pool")
    parser.add_argument("--app-dir", default=".", help="folder to import MODULE from (default .)")
    parser.add_argument("--reload", action="store_true",
                        help="development: when the pool's module file changes, import it again "
                             "and replace the consumers one at a time, keeping the cache "
                             "(SIGHUP does the same at any time)")
    add_setting_options(parser, WorkerSettings, SETTINGS, FLAGS)


def run(args: argparse.Namespace) -> int:
    from rpcfleet.commands.options import setting_overrides
    from workers.settings import WorkerSettings

    settings = WorkerSettings(**setting_overrides(args, SETTINGS))
    if settings.cap_native_threads:
        for var in NATIVE_THREAD_VARS:
            os.environ.setdefault(var, "1")  # before the pool's module imports numpy
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s [worker %(process)d] %(message)s")

    from workers import PoolNotFound, Supervisor, load_pool

    try:
        pool = load_pool(args.target, args.app_dir)
    except PoolNotFound as exc:
        print(f"rpcfleet worker: {exc}")
        return 2
    return Supervisor(pool, settings, target=args.target, watch=args.reload).run()
