"""`rpcfleet` — one console script in front of everything.

Each sub-command lives in `rpcfleet/commands/<name>.py` with `HELP`, `add_arguments(parser)` and
`run(args) -> int`; heavy imports happen inside `run`, so `rpcfleet --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS = ("up", "broker", "gateway", "worker", "workers", "prefetch", "dead")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rpcfleet",
        description="A fleet of cache-holding Python workers behind an HTTP API, over RabbitMQ.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"rpcfleet.commands.{name}")
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args._run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
