"""The PostgreSQL job store's schema: its tables, created in one transaction under an advisory
lock, and its indexes, built after them without blocking writers (docs/upgrading.md)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from gateway.store.identity import check_instance

log = logging.getLogger("rpcfleet.gateway")

SCHEMA = """
CREATE TABLE IF NOT EXISTS rpcfleet_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    method TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    error TEXT,
    progress TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    created_ms BIGINT NOT NULL,
    started_ms BIGINT,
    finished_ms BIGINT,
    priority INTEGER NOT NULL DEFAULT 0,
    deadline_ms BIGINT,
    callback_url TEXT,
    idempotency_key TEXT UNIQUE,
    body_hash TEXT,
    cancel_pending BOOLEAN NOT NULL DEFAULT FALSE,
    published BOOLEAN NOT NULL DEFAULT TRUE,
    publish_lease_ms BIGINT NOT NULL DEFAULT 0,
    owner TEXT,
    progress_n INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ms BIGINT NOT NULL,
    lease_ms BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    finished_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    job TEXT,
    PRIMARY KEY (job_id, seq)
);
"""
# Columns added since 1.1, to tables of an earlier version: a constant default, so PostgreSQL 11+
# adds each without rewriting the table, under a brief exclusive lock, taken only when missing
# (ALTER ... IF NOT EXISTS would take the lock first, and wait behind every open transaction).
ADDED_COLUMNS = (
    ("jobs", "progress_n", "INTEGER NOT NULL DEFAULT 0"),  # 1.2
)
# Built after the tables, each CONCURRENTLY: on a populated table of an earlier version, a new
# index is built while gateways on other hosts go on writing (a plain CREATE INDEX would hold
# their writes for the whole build). docs/upgrading.md.
INDEXES = (
    ("jobs_finished", "jobs (finished_ms)"),
    ("jobs_created", "jobs (created_ms)"),
    ("jobs_cancel_pending", "jobs (cancel_pending) WHERE cancel_pending"),
    ("jobs_unpublished", "jobs (publish_lease_ms) WHERE NOT published"),
    ("outbox_due", "outbox (state, next_ms)"),
    ("outbox_job", "outbox (job_id)"),  # a job's deliveries: read with it, purged with it
)
# Several gateways may start at once on a fresh database: one creates the schema at a time,
# and one builds the indexes (the others go on without waiting for it).
SCHEMA_LOCK = 0x7270_6366  # "rpcf", an advisory lock key
INDEX_LOCK = 0x7270_6367


async def prepare(pool: Any) -> str:
    """Create what is missing (tables, then indexes); the store id every gateway on this
    database shares."""
    async with pool.connection() as db, db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        await db.execute(SCHEMA)
        for table, column, definition in ADDED_COLUMNS:
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
    check_instance(
        "in this database", store_id, str(rows["store_instance"]), instance,
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


async def build_indexes(pool: Any) -> None:
    """Build the INDEXES that are missing, or invalid (a concurrent build interrupted leaves
    one), without blocking writers. CREATE INDEX CONCURRENTLY runs outside a transaction and
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
            for name, definition in INDEXES:
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
