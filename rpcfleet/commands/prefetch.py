"""`rpcfleet prefetch POOL N [--worker ID]`: change prefetch live, without restarts."""

from __future__ import annotations

import argparse

from rpcfleet.commands._gateway_client import add_gateway_arguments, call

HELP = "set the prefetch of a pool (or one consumer) live: a number 1-1000 or auto"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pool")
    parser.add_argument("value", help="1-1000, or auto")
    parser.add_argument("--worker", help="only this consumer (an id from `rpcfleet workers`)")
    add_gateway_arguments(parser)


def run(args: argparse.Namespace) -> int:
    value: int | str = args.value if args.value == "auto" else _int(args.value)
    path = (f"/v1/workers/{args.worker}/prefetch" if args.worker
            else f"/v1/pools/{args.pool}/prefetch")
    if call(args, "prefetch", "PUT", path, 202, {"prefetch": value}) is None:
        return 1
    target = args.worker or f"pool {args.pool}"
    print(f"prefetch {value} sent to {target}; it applies within 2 s (see rpcfleet workers)")
    return 0


def _int(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text  # the gateway answers 422 with what is allowed
