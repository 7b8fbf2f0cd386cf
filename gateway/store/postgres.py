"""The shared job store: PostgreSQL, for gateways on several hosts (SPEC 1.1).

The same interface and semantics as the SQLite store (`JobStore`), on psycopg 3's async pool.
Read-modify-write steps run in one transaction with row locks (`FOR UPDATE`); the callback outbox
is claimed with `FOR UPDATE SKIP LOCKED`, so gateways on any number of hosts never claim one
delivery twice and never wait on each other's claims. Every gateway on one database shares one
store id (kept in the database), hence one replies queue: any of them can record any outcome.

Needs the `postgres` extra: `pip install 'rpcfleet[postgres]'`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from gateway.store.dialect import POSTGRES
from gateway.store.identity import check_instance
from gateway.store.schema import added_columns, indexes, tables
from gateway.store.sql import SqlJobStore
from gateway.store.steps import Steps

T = TypeVar("T")
log = logging.getLogger("rpcfleet.gateway")

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
TIMEOUTS = f"-c lock_timeout={LOCK_TIMEOUT_MS} -c statement_timeout={STATEMENT_TIMEOUT_MS}"
# The server's timeouts need a server that answers: a host that went silent (a dead primary, a
# partition) is noticed by the kernel within ~10 s (TCP keepalives on an idle connection, a
# user timeout on unacknowledged data), and a store call is bounded on this side too: past
# the statement timeout and a margin it is cancelled (psycopg then tries a cancel request for
# up to 10 s and drops the connection) and fails as an outage.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
              "keepalives_count": 3, "tcp_user_timeout": 10_000}
CALL_DEADLINE_S = STATEMENT_TIMEOUT_MS / 1000 + 2
CHECK_IDLE_S = 0.1


def session(dsn: str) -> dict[str, Any]:
    """The connection settings the store adds to the user's: libpq takes one `options`, so the
    store's timeouts go after the DSN's own (or PGOPTIONS'), never in their place (a
    `search_path` set there keeps the store in its schema)."""
    from psycopg.conninfo import conninfo_to_dict

    given = conninfo_to_dict(dsn)
    own = given.get("options") or os.environ.get("PGOPTIONS") or ""
    defaults = {"connect_timeout": CONNECT_TIMEOUT_S, **KEEPALIVES}
    return {**{key: value for key, value in defaults.items() if key not in given},
            "options": f"{own} {TIMEOUTS}".strip()}


# The store's own table beside the schema's: its id and the instance it was made in.
META = "CREATE TABLE IF NOT EXISTS rpcfleet_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
# Several gateways may start at once on a fresh database: one creates the schema at a time,
# and one builds the indexes (the others go on without waiting for it).
SCHEMA_LOCK = 0x7270_6366  # "rpcf", an advisory lock key
INDEX_LOCK = 0x7270_6367


async def prepare(pool: Any) -> str:
    """Create what is missing (tables, then indexes); the store id every gateway on this
    database shares."""
    async with pool.connection() as db, db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        await db.execute(META)
        for table_sql in tables(POSTGRES):
            await db.execute(table_sql)
        for table, column, definition in added_columns(POSTGRES):
            # Added under a brief exclusive lock, taken only when missing (ALTER ... IF NOT
            # EXISTS would take the lock first, and wait behind every open transaction).
            present = await (await db.execute(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = %s AND column_name = %s", (table, column))).fetchone()
            if present is None:
                await db.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} "
                                 f"{definition}")
        instance = await _instance(db)
        await db.execute("INSERT INTO rpcfleet_meta (key, value) VALUES ('store_id', %s), "
                         "('store_instance', %s) ON CONFLICT (key) DO NOTHING",
                         ("pg" + uuid.uuid4().hex[:14], instance))
        rows = dict(await (await db.execute(
            "SELECT key, value FROM rpcfleet_meta "
            "WHERE key IN ('store_id', 'store_instance')")).fetchall())
    store_id = str(rows["store_id"])
    recorded = str(rows["store_instance"])
    compared = recorded, instance
    if UNKNOWN_CLUSTER in (recorded + instance):  # one side's role may not read it: the oid
        compared = _database_part(recorded), _database_part(instance)
    check_instance(
        "in this database", store_id, *compared,
        new_id="DELETE FROM rpcfleet_meta WHERE key IN ('store_id', 'store_instance')",
        adopt=f"UPDATE rpcfleet_meta SET value = '{instance}' WHERE key = 'store_instance'")
    await build_indexes(pool)
    return store_id


async def _instance(db: Any) -> str:
    """The database's own identity: the cluster's system identifier (kept by its replicas, so a
    promoted standby is the same instance) and the database's oid (another database restored
    from a dump, on this cluster or another, is another instance)."""
    row = await (await db.execute(
        "SELECT oid FROM pg_database WHERE datname = current_database()")).fetchone()
    try:
        async with db.transaction():  # a savepoint: the function may be refused to this role
            system = (await (await db.execute(
                "SELECT system_identifier FROM pg_control_system()")).fetchone())[0]
    except Exception:
        system = "unknown"
    return f"cluster {system} database oid {row[0]}"


UNKNOWN_CLUSTER = "cluster unknown "


def _database_part(instance: str) -> str:
    return instance[instance.index("database oid"):]


async def build_indexes(pool: Any) -> None:
    """Build the schema's indexes that are missing, or invalid (an interrupted concurrent build
    leaves one), without blocking writers. CREATE INDEX CONCURRENTLY runs outside a transaction and
    waits for the transactions open on its table, never blocking them; a session lock taken with
    `pg_try_advisory_lock` (no transaction waits on it) lets one gateway build while the others
    start at once."""
    async with pool.connection() as db:
        locked = await (await db.execute("SELECT pg_try_advisory_lock(%s)",
                                         (INDEX_LOCK,))).fetchone()
        if not (locked and locked[0]):
            log.info("another gateway is building the job store's indexes")
            return
        # A concurrent build waits for the transactions open on its table and may take long on
        # a big one: neither the session's lock timeout nor its statement timeout applies.
        await db.execute("SET lock_timeout = 0")
        await db.execute("SET statement_timeout = 0")
        try:
            for name, definition in indexes(POSTGRES):
                found = await (await db.execute(
                    "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
                    (name,))).fetchone()
                if found and found[0]:
                    continue
                if found:
                    await db.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
                log.info("building index %s of the job store", name)
                await db.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {definition}")
        finally:
            await db.execute("SELECT pg_advisory_unlock(%s)", (INDEX_LOCK,))
            await db.execute("RESET lock_timeout")
            await db.execute("RESET statement_timeout")


class IdleConnections:
    """A server restarted (an upgrade, a failover to the same address) has closed every pooled
    connection: a call must not get one. A connection leaving the pool after more than
    CHECK_IDLE_S unused is checked first (an empty query, one round trip: ~0.1 ms of the
    gateway's CPU, measured, a quarter of a store call), so a busy store, whose connections
    come back within milliseconds, pays nothing (measured: 3,000 calls in a row cost the same
    with and without it); no restart is quicker than that."""

    def __init__(self) -> None:
        self._last_used: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def used(self, connection: Any) -> None:
        self._last_used[connection] = time.monotonic()

    async def check(self, connection: Any) -> None:
        last = self._last_used.get(connection)
        if last is None or time.monotonic() - last > CHECK_IDLE_S:
            from psycopg_pool import AsyncConnectionPool

            await AsyncConnectionPool.check_connection(connection)


class PostgresJobStore(SqlJobStore):
    dialect = POSTGRES
    purge_batch = 500  # ~32 µs a job at 1M jobs: ~16 ms a batch
    call_deadline_s = CALL_DEADLINE_S

    def __init__(self, pool: Any, store_id: str, idle: IdleConnections) -> None:
        self._pool = pool
        self.store_id = store_id
        self._idle = idle

    @classmethod
    async def open(cls, dsn: str) -> PostgresJobStore:
        from psycopg_pool import AsyncConnectionPool

        idle = IdleConnections()
        pool = AsyncConnectionPool(dsn, min_size=1, max_size=POOL_MAX, open=False,
                                   kwargs={"autocommit": True, **session(dsn)},
                                   timeout=POOL_WAIT_S, check=idle.check)
        await pool.open(wait=True, timeout=30)
        try:
            store_id = await prepare(pool)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, store_id, idle)

    async def close(self) -> None:
        await self._pool.close()

    async def _read(self, steps: Steps[T]) -> T:
        async with self._connection() as db:
            return await _drive(db, steps)  # autocommit: each statement on its own

    async def _write(self, steps: Steps[T], *, single: bool = False) -> T:
        async with self._connection() as db:
            if single:
                return await _drive(db, steps)
            async with db.transaction():  # answered once committed, on leaving it
                return await _drive(db, steps)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection for one store call, bounded on this side (past
        `call_deadline_s`, an outage) and stamped when given back (IdleConnections)."""
        try:
            async with asyncio.timeout(self.call_deadline_s), self._pool.connection() as db:
                try:
                    yield db
                finally:
                    self._idle.used(db)
        except TimeoutError:
            from psycopg import OperationalError

            raise OperationalError(f"the job store did not answer within "
                                   f"{self.call_deadline_s:g} s") from None


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
