"""`rpcfleet prefetch POOL N [--worker ID]`: change prefetch live, without restarts."""

from __future__ import annotations

import argparse

import httpx

from rpcfleet.commands._gateway_client import add_gateway_arguments, error_text, request

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
    try:
        response = request(args, "PUT", path, {"prefetch": value})
    except httpx.HTTPError as exc:
        print(f"rpcfleet prefetch: cannot reach {args.gateway}: {exc}")
        return 1
    if response.status_code != 202:
        print(f"rpcfleet prefetch: {error_text(response)}")
        return 1
    target = args.worker or f"pool {args.pool}"
    print(f"prefetch {value} sent to {target}; it applies within 2 s (see rpcfleet workers)")
    return 0


def _int(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text  # the gateway answers 422 with what is allowed
