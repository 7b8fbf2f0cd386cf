"""`rpcfleet retire POOL [--drain]`: take a pool out of service on purpose (SPEC 1.2)."""

from __future__ import annotations

import argparse
import time

from rpcfleet.commands._gateway_client import add_gateway_arguments, call

HELP = ("take a pool out of service: unbind its methods, serve (--drain) or dead-letter what "
        "is queued, stop its workers, delete its queue")
POLL_S = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pool")
    parser.add_argument("--drain", action="store_true",
                        help="serve what is queued before the workers leave (default: they "
                             "finish what runs, and the rest is dead-lettered, replayable)")
    parser.add_argument("--wait", type=float, default=600.0, metavar="SECONDS",
                        help="follow the retirement this long (0: return at once)")
    add_gateway_arguments(parser)


def run(args: argparse.Namespace) -> int:
    query = "?drain=true" if args.drain else ""
    if call(args, "retire", "DELETE", f"/v1/pools/{args.pool}{query}", 202) is None:
        return 1
    print(f"retiring pool {args.pool}: its methods are unbound; "
          + ("serving what is queued" if args.drain else "dead-lettering what is queued"))
    deadline = time.monotonic() + args.wait
    last = ""
    while time.monotonic() < deadline:
        answer = call(args, "retire", "GET", "/v1/pools", 200)
        if answer is None:
            return 1
        pool = next((p for p in answer.json() if p["pool"] == args.pool), None)
        if pool is None or pool["retired"]:
            print(f"pool {args.pool} retired")
            return 0
        state = (pool.get("retiring") or {}).get("state", "")
        if state.startswith("failed"):
            print(f"rpcfleet retire: {state}")
            return 1
        if state and state != last:
            print(f"  {state}")
            last = state
        time.sleep(POLL_S)
    if args.wait:
        print(f"still retiring after {args.wait:g} s; `rpcfleet workers` and GET /v1/pools "
              "follow it")
    return 0
