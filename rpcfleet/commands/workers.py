"""`rpcfleet workers`: the live fleet as a table (from a gateway's /v1/workers)."""

from __future__ import annotations

import argparse
import json

from rpcfleet.commands._gateway_client import add_gateway_arguments, call

HELP = "list the consumer processes of the fleet"
COLUMNS = ("id", "pid", "prefetch", "concurrency", "in_flight", "processed", "failed", "pss",
           "cache", "last_seen")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gateway_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the raw JSON")


def _mib(value: object) -> str:
    return f"{int(value) / 1048576:,.0f}M" if isinstance(value, int) else "-"


def rows(entries: list[dict[str, object]]) -> list[tuple[str, ...]]:
    table: list[tuple[str, ...]] = []
    for e in entries:
        prefetch = f"{e['prefetch']}{' auto' if e.get('prefetch_mode') == 'auto' else ''}"
        name = f"{e['id']} (leaving)" if e.get("leaving") else str(e["id"])
        table.append((name, str(e["pid"]), prefetch, str(e["concurrency"]),
                      str(e["in_flight"]), str(e["processed"]), str(e["failed"]),
                      _mib(e.get("pss_bytes")), _mib(e.get("cache_bytes")),
                      str(e["last_seen"])))
    return table


def run(args: argparse.Namespace) -> int:
    response = call(args, "workers", "GET", "/v1/workers", 200)
    if response is None:
        return 1
    entries = response.json()
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    table = [COLUMNS, *rows(entries)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    if not entries:
        print("(no live workers)")
    return 0
