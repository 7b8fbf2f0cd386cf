"""`rpcfleet` — one console script in front of everything.

Each sub-command lives in `rpcfleet/commands/<name>.py` with `HELP`, `add_arguments(parser)` and
`run(args) -> int`; heavy imports happen inside `run`, so `rpcfleet --help` stays instant. A
command's process imports only its own module: a gateway process never loads the worker side or
the HTTP client the other commands use (8 MiB of RSS in each gateway process).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Mapping, Sequence

from pydantic import ValidationError

COMMANDS = ("up", "broker", "gateway", "worker", "workers", "prefetch", "processes", "retire",
            "dead")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or only the one `argv` names (what `main` needs)."""
    parser = argparse.ArgumentParser(
        prog="rpcfleet",
        description="A fleet of cache-holding Python workers behind an HTTP API, over RabbitMQ.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    named = argv[0] if argv else None
    for name in (named,) if named in COMMANDS else COMMANDS:
        module = importlib.import_module(f"rpcfleet.commands.{name}")
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        code: int = args._run(args)
    except ValidationError as exc:  # a setting out of range, from the environment or a flag
        from rpcfleet.commands.options import setting_flags

        print(f"rpcfleet {argv[0] if argv else ''}: "
              f"{settings_problem(exc, setting_flags(args))}", file=sys.stderr)
        return 2
    return code


def settings_problem(exc: ValidationError, flags: Mapping[str, str]) -> str:
    """One line per bad setting, named as the user can set it: RPCFLEET_NAME, and its flag when
    the command has one (`flags`)."""
    lines = []
    for error in exc.errors(include_url=False):
        if not error["loc"]:  # a rule across settings: its message names them
            lines.append(f"invalid settings: {str(error['msg']).removeprefix('Value error, ')}")
            continue
        name = str(error["loc"][0])
        value = error.get("input")
        flag = f" ({flags[name]})" if name in flags else ""
        lines.append(f"invalid setting RPCFLEET_{name.upper()}{flag}={value!r}: {error['msg']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
