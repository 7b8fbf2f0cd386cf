"""`rpcfleet processes POOL MIN..MAX`: change a pool's consumers per host live (SPEC 1.2)."""

from __future__ import annotations

import argparse
import sys

from protocol.fleet import ProcessRange
from rpcfleet.commands._gateway_client import add_gateway_arguments, call

HELP = "set a pool's consumers per host live: N (fixed) or MIN..MAX (elastic)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pool")
    parser.add_argument("range", metavar="MIN..MAX", help="e.g. 1..8, or 4 for a fixed count")
    add_gateway_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        wanted = ProcessRange.parse(args.range)
    except ValueError as exc:
        print(f"rpcfleet processes: {exc}", file=sys.stderr)
        return 2
    body = {"min": wanted.min, "max": wanted.max}
    if call(args, "processes", "PUT", f"/v1/pools/{args.pool}/processes", 202, body) is None:
        return 1
    print(f"processes {wanted} sent to pool {args.pool}; each host applies it within a second "
          "(see rpcfleet workers)")
    return 0
