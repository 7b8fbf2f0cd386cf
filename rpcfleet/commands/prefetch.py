"""`rpcfleet prefetch`: not built yet."""

from __future__ import annotations

import argparse

HELP = "prefetch (not built yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def run(args: argparse.Namespace) -> int:
    raise SystemExit("rpcfleet prefetch: not built yet")
