"""`rpcfleet dead POOL`: a pool's dead letters — list them, replay them, purge them."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from protocol.dead import DeadLetter

HELP = "list, replay or purge a pool's dead letters (rpcfleet.dead.POOL)"
COLUMNS = ("id", "method", "reason", "attempt", "waiter", "age", "bytes", "detail")


SETTINGS = ("amqp_url",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from rpcfleet.commands.options import add_setting_options
    from transport.settings import CommonSettings

    parser.add_argument("pool")
    parser.add_argument("--limit", type=_count, default=100,
                        help="list or act on this many at most (of the first 1000 queued)")
    parser.add_argument("--reason", help="only dead letters with this reason (e.g. expired)")
    parser.add_argument("--id", action="append", dest="ids", metavar="ID",
                        help="only this request id (repeatable)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--replay", action="store_true",
                        help="publish the selected requests to their pool again, as attempt 1")
    action.add_argument("--purge", action="store_true", help="remove the selected dead letters")
    parser.add_argument("--timeout", type=_seconds,
                        help="with --replay: the replayed requests' deadline, seconds from now "
                             "(default: none)")
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    add_setting_options(parser, CommonSettings, SETTINGS)


def run(args: argparse.Namespace) -> int:
    from rpcfleet.commands.options import setting_overrides
    from transport.settings import CommonSettings

    settings = CommonSettings(**setting_overrides(args, SETTINGS))
    try:
        return asyncio.run(_run(args, settings.amqp_url))
    except Exception as exc:  # a clear line, not a traceback, for an operator's typo or outage
        print(f"rpcfleet dead: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace, amqp_url: str) -> int:
    from protocol.clock import now_ms
    from transport.deadletters import ReplayRefused, dead_letter_queue

    failed = 0
    async with dead_letter_queue(amqp_url, args.pool) as queue:
        held = await queue.take()  # all of them, up to SCAN_MAX: a look keeps their order
        chosen = [item for item in held
                  if (args.reason is None or item.letter.reason == args.reason)
                  and (not args.ids or item.letter.id in args.ids)][:args.limit]
        if args.replay or args.purge:
            verb = "replayed" if args.replay else "purged"
            for item in chosen:
                try:
                    if args.replay:
                        await queue.replay(item, args.timeout)
                    else:
                        await queue.purge(item)
                    print(f"{verb} {item.letter.id} ({item.letter.method})")
                except ReplayRefused as refused:
                    failed += 1
                    print(f"kept {item.letter.id} ({item.letter.method}): {refused}")
            print(f"{len(chosen) - failed} {verb}, {failed} kept; "
                  f"{len(held) - len(chosen)} not selected")
            return 1 if failed else 0
        now = now_ms()
        if args.json:
            print(json.dumps([item.letter.model_dump(mode="json") for item in chosen], indent=2))
            return 0
        table = [COLUMNS, *(_row(item.letter, now) for item in chosen)]
        widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS) - 1)]
        for row in table:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            print("  ".join([*cells, row[-1]]))
        more = " (more not shown: --limit)" if len(chosen) == args.limit else ""
        print(f"{len(chosen)} dead letters in rpcfleet.dead.{args.pool}{more}")
    return 0


def _row(letter: DeadLetter, now: int) -> tuple[str, ...]:
    age = "-" if letter.dead_at_ms is None else f"{(now - letter.dead_at_ms) / 1000:.0f}s"
    return (letter.id or "-", letter.method or "-", letter.reason, str(letter.attempt),
            letter.waiter.value, age, str(letter.size), letter.detail[:60])


def _count(text: str) -> int:
    """--limit: a whole number, 0 or more (a negative one would act on all but the last)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"a whole number, 0 or more, not {text}")
    return value


def _seconds(text: str) -> float:
    """--timeout: a finite number of seconds above 0 (0 replays a request already expired)."""
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"a number of seconds above 0, not {text}")
    return value
