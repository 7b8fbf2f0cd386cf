"""`rpcfleet worker MODULE:POOL`: load the pool's cache once, fork and supervise its consumers."""

from __future__ import annotations

import argparse
import logging
import os

HELP = "run a worker pool: rpcfleet worker package.module:pool --processes N --prefetch P"

# Native thread pools sized to the host in every consumer would oversubscribe the cores N times.
NATIVE_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                      "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="MODULE:POOL", help="e.g. examples.vectors:pool")
    parser.add_argument("--processes", type=int, help="consumer processes (env RPCFLEET_PROCESSES)")
    parser.add_argument("--prefetch", type=int, help="messages each consumer holds (default 1)")
    parser.add_argument("--concurrency", type=int, help="handlers each consumer runs at once")
    parser.add_argument("--amqp-url", help="broker URL (env RPCFLEET_AMQP_URL)")
    parser.add_argument("--heartbeat", type=int, help="AMQP heartbeat seconds (RPCFLEET_HEARTBEAT)")
    parser.add_argument("--queue-type", choices=["classic", "quorum"])
    parser.add_argument("--app-dir", default=".", help="folder to import MODULE from (default .)")
    parser.add_argument("--max-messages", type=int, metavar="N",
                        help="recycle a consumer after N messages (env RPCFLEET_MAX_MESSAGES)")
    parser.add_argument("--max-private-mb", type=int, metavar="MB",
                        help="recycle a consumer whose private memory passes MB "
                             "(env RPCFLEET_MAX_PRIVATE_MB)")
    parser.add_argument("--reload", action="store_true",
                        help="development: when the pool's module file changes, import it again "
                             "and replace the consumers one at a time, keeping the cache "
                             "(SIGHUP does the same at any time)")
    parser.add_argument("--no-preload", action="store_true",
                        help="build the cache in each consumer instead of once before forking")
    parser.add_argument("--no-cap-threads", action="store_true",
                        help="leave native thread pools (OpenBLAS, OpenMP, MKL) at their default")


def run(args: argparse.Namespace) -> int:
    from rpcfleet.settings import WorkerSettings

    overrides = {key: value for key, value in {
        "processes": args.processes, "prefetch": args.prefetch,
        "concurrency": args.concurrency, "amqp_url": args.amqp_url,
        "heartbeat": args.heartbeat, "queue_type": args.queue_type,
        "max_messages": args.max_messages, "max_private_mb": args.max_private_mb,
    }.items() if value is not None}
    if args.no_preload:
        overrides["preload"] = False
    if args.no_cap_threads:
        overrides["cap_native_threads"] = False
    settings = WorkerSettings(**overrides)
    if settings.cap_native_threads:
        for var in NATIVE_THREAD_VARS:
            os.environ.setdefault(var, "1")  # before the pool's module imports numpy
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s [worker %(process)d] %(message)s")

    from workers import PoolNotFound, Supervisor, load_pool

    try:
        pool = load_pool(args.target, args.app_dir)
    except PoolNotFound as exc:
        print(f"rpcfleet worker: {exc}")
        return 2
    return Supervisor(pool, settings, target=args.target, watch=args.reload).run()
