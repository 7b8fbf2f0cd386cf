"""SQLite schema of the job store (WAL: one writer at a time, readers never blocked)."""

from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    method TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    error TEXT,
    progress TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    created_ms INTEGER NOT NULL,
    started_ms INTEGER,
    finished_ms INTEGER,
    priority INTEGER NOT NULL DEFAULT 0,
    deadline_ms INTEGER,
    callback_url TEXT,
    idempotency_key TEXT UNIQUE,
    body_hash TEXT,
    cancel_pending INTEGER NOT NULL DEFAULT 0,
    published INTEGER NOT NULL DEFAULT 1,  -- 0: its request was not confirmed by the broker yet
    publish_lease_ms INTEGER NOT NULL DEFAULT 0,  -- who publishes it owns it until then
    owner TEXT,  -- a fingerprint of the API key that submitted it (NULL: keys not in use)
    progress_n INTEGER NOT NULL DEFAULT 0  -- the last progress event of this attempt recorded
);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_ms);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_ms);
CREATE INDEX IF NOT EXISTS jobs_cancel_pending ON jobs (cancel_pending) WHERE cancel_pending = 1;
CREATE INDEX IF NOT EXISTS jobs_unpublished ON jobs (publish_lease_ms) WHERE published = 0;
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ms INTEGER NOT NULL,
    lease_ms INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    finished_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_ms);
CREATE INDEX IF NOT EXISTS outbox_job ON outbox (job_id);
-- Every state and progress change of a job, in order (SSE and WebSocket replay them). `job` is
-- the job object as of the event; NULL for the terminal one (the job itself no longer changes).
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    job TEXT,
    PRIMARY KEY (job_id, seq)
);
"""

# Columns added after the first release: (table, column, definition) for files made before.
ADDED_COLUMNS = [
    ("jobs", "published", "INTEGER NOT NULL DEFAULT 1"),
    ("jobs", "publish_lease_ms", "INTEGER NOT NULL DEFAULT 0"),
    ("jobs", "owner", "TEXT"),
    ("jobs", "progress_n", "INTEGER NOT NULL DEFAULT 0"),
]

# Several gateway processes share the file: wait for the writer instead of failing at once.
BUSY_TIMEOUT_MS = 10_000


# The store's SQL (gateway.store.operations) uses RETURNING (SQLite 3.35, March 2021), UPDATE
# ... FROM (3.33) and upserts (3.24): Debian 12, Ubuntu 22.04 and python.org's builds have it.
MIN_SQLITE = (3, 35, 0)


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
    migrate(connection)
    connection.executescript(SCHEMA)
    return connection


def migrate(connection: sqlite3.Connection) -> None:
    """Bring a file made by an earlier version up to SCHEMA (new files get it whole)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        for table, column, definition in ADDED_COLUMNS:
            present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
            if present and column not in present:
                connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
