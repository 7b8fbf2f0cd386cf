"""Group commit for the SQLite store: the writes waiting when the store's thread gets to them run
in one transaction, and one COMMIT (one fsync under `synchronous = FULL`) makes them all durable.

A write is queued from the event loop; the first write of a group also queues a flush on the
store's single thread, behind whatever that thread was given before (reads included), so every
call still runs in the order it was made. While a flush runs, the next group gathers. Nobody
waits on a timer: a lone write is committed as soon as the thread is free, and under load each
commit serves every write that arrived during the previous one.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class _Write:
    func: Callable[..., Any]
    args: tuple[Any, ...]
    done: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


class GroupCommit:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._lock = threading.Lock()  # the queue is shared by the event loop and the thread
        self._queued: list[_Write] = []
        self._flush_queued = False
        self.commits = 0  # groups flushed (committed, or all refused together)
        self.writes = 0  # writes they held

    async def submit(self, executor: Executor, func: Callable[..., T], *args: Any) -> T:
        """Run `func(*args)` (on the store's thread, inside the group's transaction; it opens
        its own savepoint if it must undo itself alone); its result once the group is
        committed."""
        loop = asyncio.get_running_loop()
        write = _Write(func, args, loop.create_future(), loop)
        with self._lock:
            self._queued.append(write)
            first, self._flush_queued = not self._flush_queued, True
        if first:
            try:
                executor.submit(self._flush)
            except RuntimeError:  # the store is closed: nothing will run these
                with self._lock:
                    stranded, self._queued, self._flush_queued = self._queued, [], False
                for other in stranded:
                    if not other.done.done():
                        other.done.set_exception(RuntimeError("the job store is closed"))
        result: T = await write.done
        return result

    def _flush(self) -> None:
        with self._lock:
            group, self._queued, self._flush_queued = self._queued, [], False
        if not group:
            return
        outcomes: list[tuple[bool, Any]] = []
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for write in group:
                    try:
                        outcomes.append((True, write.func(*write.args)))
                    except Exception as exc:
                        if not self._db.in_transaction:
                            # SQLite rolled the whole group back (a full disk, an I/O error):
                            # what ran is undone, and what follows must not run on its own
                            # (each would commit alone, then be reported failed).
                            raise
                        outcomes.append((False, exc))
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except Exception as exc:  # the group did not commit: none of its writes happened
            outcomes = [(False, exc)] * len(group)
        self.commits += 1
        self.writes += len(group)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Write, bool, Any]]] = {}
        for write, (ok, value) in zip(group, outcomes, strict=True):
            by_loop.setdefault(write.loop, []).append((write, ok, value))
        for loop, settled in by_loop.items():  # one wake-up of each loop per group
            try:
                loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass


def _settle(settled: list[tuple[_Write, bool, Any]]) -> None:
    for write, ok, value in settled:
        if write.done.done():  # its caller was cancelled; the write happened all the same
            continue
        if ok:
            write.done.set_result(value)
        else:
            write.done.set_exception(value)
