"""`rpcfleet worker`: not built yet."""

from __future__ import annotations

import argparse

HELP = "worker (not built yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def run(args: argparse.Namespace) -> int:
    raise SystemExit("rpcfleet worker: not built yet")
