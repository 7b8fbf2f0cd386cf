"""What differs between the two databases the job store runs on, and nothing else: the store's
SQL (`gateway.store.operations`) is written once with `?` placeholders and these few words."""

from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    name: str
    true: str  # a boolean column's values: SQLite keeps 1 and 0 (its partial indexes say so)
    false: str
    boolean: str  # column types
    bigint: str
    greatest: str  # the larger of two values: SQLite's two-argument MAX, GREATEST elsewhere
    distinct_from: str  # NULL-safe "differs": SQLite 3.35-3.38 lack IS DISTINCT FROM
    for_update: str  # row locks of a read-modify-write (SQLite's write transaction is one lock)
    skip_locked_of: str  # rows of a table another writer holds are left to it (a claim, a purge)
    clock_ms: str  # the database's clock in ms, one value throughout a statement: one clock
    # for every gateway host
    percent_placeholders: bool  # psycopg's %s instead of SQLite's ?

    def statement(self, sql: str) -> str:
        """`sql` as this database's driver takes it."""
        return _percent(sql) if self.percent_placeholders else sql

    def is_set(self, column: str) -> str:
        """A boolean column's test as the partial indexes of every earlier version say it (a
        planner matches a partial index only to a condition written alike)."""
        return f"{column} = 1" if self.true == "1" else column

    def is_unset(self, column: str) -> str:
        return f"{column} = 0" if self.false == "0" else f"NOT {column}"

    def skip_locked(self, table: str) -> str:
        return self.skip_locked_of.format(table)


@functools.lru_cache(maxsize=256)
def _percent(sql: str) -> str:
    # The store's SQL has no literal "%" and no "?" but placeholders.
    return sql.replace("?", "%s")


SQLITE = Dialect(
    name="sqlite", true="1", false="0", boolean="INTEGER", bigint="INTEGER", greatest="MAX",
    distinct_from="IS NOT", for_update="", skip_locked_of="",
    clock_ms="CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    percent_placeholders=False)

POSTGRES = Dialect(
    name="postgresql", true="TRUE", false="FALSE", boolean="BOOLEAN", bigint="BIGINT",
    greatest="GREATEST", distinct_from="IS DISTINCT FROM", for_update=" FOR UPDATE",
    skip_locked_of=" FOR UPDATE OF {} SKIP LOCKED",
    clock_ms="(extract(epoch FROM statement_timestamp()) * 1000)::bigint",
    percent_placeholders=True)
