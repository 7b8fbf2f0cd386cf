"""The shared job store: PostgreSQL, for gateways on several hosts (SPEC 1.1).

The same interface and semantics as the SQLite store (`JobStore`), on psycopg 3's async pool.
Read-modify-write steps run in one transaction with row locks (`FOR UPDATE`); the callback outbox
is claimed with `FOR UPDATE SKIP LOCKED`, so gateways on any number of hosts never claim one
delivery twice and never wait on each other's claims. Every gateway on one database shares one
store id (kept in the database), hence one replies queue: any of them can record any outcome.

Needs the `postgres` extra: `pip install 'rpcfleet[postgres]'`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from gateway.store.dialect import POSTGRES
from gateway.store.operations import Steps
from gateway.store.pg_schema import prepare
from gateway.store.sql import SqlJobStore

T = TypeVar("T")

POOL_MAX = 10  # connections per gateway process: the store's calls are short
# How long a statement waits for a connection (psycopg_pool: 30 s): a database that is down
# fails a request in seconds, not half a minute, and an outcome is parked sooner.
POOL_WAIT_S = 5.0
# A database that stops answering costs a request seconds, not forever (issue 22): connecting
# gives up after 5 s, waiting for a row lock after 5 s, any statement after 30 s; each ends as
# an outage (503 `unavailable`, an outcome parked). The index build lifts the last two.
CONNECT_TIMEOUT_S = 5
LOCK_TIMEOUT_MS = 5_000
STATEMENT_TIMEOUT_MS = 30_000
SESSION = {"connect_timeout": CONNECT_TIMEOUT_S,
           "options": f"-c lock_timeout={LOCK_TIMEOUT_MS} "
                      f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"}


class PostgresJobStore(SqlJobStore):
    dialect = POSTGRES
    purge_batch = 500  # ~32 µs a job at 1M jobs: ~16 ms a batch

    def __init__(self, pool: Any, store_id: str) -> None:
        self._pool = pool
        self.store_id = store_id

    @classmethod
    async def open(cls, dsn: str) -> PostgresJobStore:
        from psycopg_pool import AsyncConnectionPool

        pool = AsyncConnectionPool(dsn, min_size=1, max_size=POOL_MAX, open=False,
                                   kwargs={"autocommit": True, **SESSION}, timeout=POOL_WAIT_S)
        await pool.open(wait=True, timeout=30)
        try:
            store_id = await prepare(pool)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, store_id)

    async def close(self) -> None:
        await self._pool.close()

    async def _read(self, steps: Steps[T]) -> T:
        async with self._pool.connection() as db:  # autocommit: each statement on its own
            return await _drive(db, steps)

    async def _write(self, steps: Steps[T], *, single: bool = False) -> T:
        async with self._pool.connection() as db:
            if single:
                return await _drive(db, steps)
            async with db.transaction():  # answered once committed, on leaving it
                return await _drive(db, steps)


async def _drive(db: Any, steps: Steps[T]) -> T:
    try:
        step = next(steps)
        while True:
            cursor = await db.execute(POSTGRES.statement(step.text), step.args)
            if step.fetch == "count":
                step = steps.send(cursor.rowcount)
            elif step.fetch == "all":
                step = steps.send(await cursor.fetchall())
            else:
                step = steps.send(await cursor.fetchone())
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
