"""The steps an operation of the job store yields (`gateway.store.operations`): each statement,
with `?` placeholders, and what the driver sends back for it (a row, the rows, or how many rows
it changed). The protocol between the SQL, written once, and the two drivers that run it."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

T = TypeVar("T")
Fetch = Literal["one", "all", "count"]


@dataclass(frozen=True)
class Sql:
    """One statement: `?` placeholders, and what its step is sent back (`fetch`)."""

    text: str
    args: tuple[Any, ...] = ()
    fetch: Fetch = "count"


Steps = Generator[Sql, Any, T]


def one(text: str, *args: Any) -> Sql:
    return Sql(text, args, "one")


def rows(text: str, *args: Any) -> Sql:
    return Sql(text, args, "all")


def changes(text: str, *args: Any) -> Steps[int]:
    """A statement's step, sent back the number of rows it changed."""
    changed_rows = yield Sql(text, args, "count")
    return int(changed_rows)
