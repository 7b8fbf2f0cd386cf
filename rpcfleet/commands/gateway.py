"""`rpcfleet gateway`: not built yet."""

from __future__ import annotations

import argparse

HELP = "gateway (not built yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def run(args: argparse.Namespace) -> int:
    raise SystemExit("rpcfleet gateway: not built yet")
