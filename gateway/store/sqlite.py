"""The embedded job store: SQLite in WAL mode, shared by the gateway processes of one host.

Every call runs in one dedicated thread per store (the event loop never blocks on the file), in
the order it was made. Writes are group-committed: the writes waiting when the thread gets to
them run in one `BEGIN IMMEDIATE` transaction (so two processes never interleave them), each in
its own savepoint (one write's error undoes that write alone), and one COMMIT, one fsync, makes
them all durable before any of their callers hears back.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from gateway.store.dialect import SQLITE
from gateway.store.group_commit import GroupCommit
from gateway.store.identity import check_instance
from gateway.store.schema import added_columns, indexes, tables
from gateway.store.sql import SqlJobStore
from gateway.store.steps import Steps
from transport.waiting import poll_blocking

T = TypeVar("T")

# The store's SQL (gateway.store.operations) uses RETURNING (SQLite 3.35, March 2021), UPDATE
# ... FROM (3.33) and upserts (3.24): Debian 12, Ubuntu 22.04 and python.org's builds have it.
MIN_SQLITE = (3, 35, 0)
# Several gateway processes share the file: wait for the writer instead of failing at once.
BUSY_TIMEOUT_MS = 10_000


class SqliteJobStore(SqlJobStore):
    dialect = SQLITE
    # ~22 µs a job to purge at 1M jobs with time-ordered ids (6-8 ms a batch); rows of the random
    # ids made before 1.2 cost ~240 µs each (~60 ms a batch) until they are purged.
    purge_batch = 250

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists()
        self._db = connect(str(path))
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="jobstore")
        try:
            self.store_id = _store_id(path.with_suffix(".id"), path, adopt=fresh)
        except BaseException:
            self._db.close()
            raise
        self._writes = GroupCommit(self._db)

    async def _read(self, steps: Steps[T]) -> T:
        return await self._in_thread(self._drive, steps)

    async def _write(self, steps: Steps[T], *, single: bool = False) -> T:
        """The steps in the next group commit, in a savepoint of their own (their error undoes
        them alone); their result once that commit is durable."""
        return await self._writes.submit(self._thread, self._drive_saved, steps)

    async def _in_thread(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, func, *args)

    def _drive(self, steps: Steps[T]) -> T:
        try:
            step = next(steps)
            while True:
                cursor = self._db.execute(step.text, step.args)
                if step.fetch == "count":
                    step = steps.send(cursor.rowcount)
                else:  # every row, so the statement is done before the next one
                    found = cursor.fetchall()
                    step = steps.send(found if step.fetch == "all" else
                                      (found[0] if found else None))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _drive_saved(self, steps: Steps[T]) -> T:
        self._db.execute("SAVEPOINT write")
        try:
            result = self._drive(steps)
        except BaseException:
            # SQLite may have rolled the whole transaction back (a full disk, an I/O error):
            # no savepoint is left to undo, and the group ends with this error (group_commit).
            if self._db.in_transaction:
                self._db.execute("ROLLBACK TO write")
                self._db.execute("RELEASE write")
            raise
        self._db.execute("RELEASE write")
        return result

    async def close(self) -> None:
        await self._in_thread(self._db.close)
        self._thread.shutdown(wait=True)


def connect(path: str) -> sqlite3.Connection:
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise ValueError(
            f"the SQLite job store needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer; this "
            f"Python's sqlite3 module runs {sqlite3.sqlite_version}: use a Python built with a "
            "newer SQLite, or the PostgreSQL store (RPCFLEET_JOB_STORE=postgresql://...)")
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    connection.execute("PRAGMA journal_mode = WAL")
    # FULL: each commit is on disk before it returns, so an outcome is acked to the broker only
    # once it is durable (NORMAL in WAL mode could lose the last commits to a power cut after
    # their replies were acked: lost jobs). Costs an fsync per commit, which group commit shares
    # among the writes waiting for it (gateway.store.group_commit).
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("PRAGMA foreign_keys = ON")
    prepare(connection)
    return connection


def prepare(connection: sqlite3.Connection) -> None:
    """Create what is missing, in one write transaction: a file made by an earlier version
    gains its new columns, then the tables and indexes a new file needs (SQLite has no
    concurrent index build: the other processes on the file wait, docs/upgrading.md)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        for table, column, definition in added_columns(SQLITE):
            present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
            if present and column not in present:
                connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        for statement in tables(SQLITE):
            connection.execute(statement)
        for name, definition in indexes(SQLITE):
            connection.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {definition}")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _store_id(path: Path, database: Path, *, adopt: bool = False) -> str:
    """This file's identity, kept next to it: the gateways sharing the file (one host) share a
    replies queue named after it; another state dir, even on the same machine, is another
    host. Created once; O_EXCL makes two processes starting together agree on one. The second
    line is the database file's inode: a copy of the directory is another file, and refuses
    to start under the original's id (`gateway.store.identity`). An id file of one line (from
    before 1.2, or after a move) adopts the file it is beside, and so does one beside a database
    file just created (the old one deleted to start afresh: no other store is involved)."""
    instance = f"inode {database.stat().st_ino}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        poll_blocking(lambda: path.read_text().endswith("\n"), 5, 0.01)  # its creator writes it
        text = path.read_text()
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            raise RuntimeError(f"{path} is empty: remove it to give the store a new id") from None
        store_id, recorded = lines[0], (lines[1] if len(lines) > 1 else "")
        if not recorded or (adopt and recorded != instance):
            path.write_text(f"{store_id}\n{instance}\n")
            return store_id
        check_instance(str(database), store_id, recorded, instance,
                       new_id=f"remove {path}",
                       adopt=f"remove the second line of {path}")
        return store_id
    with os.fdopen(fd, "w") as out:
        out.write(f"{uuid.uuid4().hex[:16]}\n{instance}\n")
    return path.read_text().splitlines()[0].strip()
