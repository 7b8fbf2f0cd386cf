"""The job store's schema, once for both databases: its tables, the columns added since the first
release (a store of an earlier version gains them in place), and its indexes. Pure data in the
dialect's words (`gateway.store.dialect`); each store creates it its own way (SQLite in one write
transaction, PostgreSQL with its indexes built concurrently: docs/upgrading.md)."""

from __future__ import annotations

from gateway.store.dialect import Dialect

TABLES = ("""
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    method TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    error TEXT,
    progress TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    created_ms {bigint} NOT NULL,
    started_ms {bigint},
    finished_ms {bigint},
    priority INTEGER NOT NULL DEFAULT 0,
    deadline_ms {bigint},
    callback_url TEXT,
    idempotency_key TEXT UNIQUE,
    body_hash TEXT,
    cancel_pending {boolean} NOT NULL DEFAULT {false},
    published {boolean} NOT NULL DEFAULT {true},  -- false: the broker has not confirmed its request
    publish_lease_ms {bigint} NOT NULL DEFAULT 0,  -- who publishes it owns it until then
    owner TEXT,  -- a fingerprint of the API key that submitted it (NULL: keys not in use)
    progress_n INTEGER NOT NULL DEFAULT 0  -- the last progress event of this attempt recorded
)""", """
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ms {bigint} NOT NULL,
    lease_ms {bigint} NOT NULL DEFAULT 0,
    last_error TEXT,
    finished_ms {bigint} NOT NULL
)""", """
-- Every state and progress change of a job, in order (SSE and WebSocket replay them). `job` is
-- the job object as of the event; NULL for the terminal one (the job itself no longer changes).
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    job TEXT,
    PRIMARY KEY (job_id, seq)
)""")

# Columns added since the first release, to tables of an earlier version: (table, column,
# definition). Each with a constant default: PostgreSQL 11+ adds one without rewriting the table.
# The PostgreSQL store's first tables (1.1) had all but the last one (1.2).
ADDED_COLUMNS = (
    ("jobs", "published", "{boolean} NOT NULL DEFAULT {true}"),
    ("jobs", "publish_lease_ms", "{bigint} NOT NULL DEFAULT 0"),
    ("jobs", "owner", "TEXT"),
    ("jobs", "progress_n", "INTEGER NOT NULL DEFAULT 0"),
)


def _words(d: Dialect) -> dict[str, str]:
    return {"bigint": d.bigint, "boolean": d.boolean, "true": d.true, "false": d.false}


def tables(d: Dialect) -> list[str]:
    """One CREATE TABLE IF NOT EXISTS statement a table."""
    return [table.format(**_words(d)) for table in TABLES]


def added_columns(d: Dialect) -> list[tuple[str, str, str]]:
    """(table, column, definition) in the dialect's words."""
    return [(table, column, definition.format(**_words(d)))
            for table, column, definition in ADDED_COLUMNS]


def indexes(d: Dialect) -> list[tuple[str, str]]:
    """(name, definition): the partial ones say their condition as the store's queries do, so
    each database's planner matches them."""
    return [
        ("jobs_finished", "jobs (finished_ms)"),
        ("jobs_created", "jobs (created_ms)"),
        ("jobs_cancel_pending", f"jobs (cancel_pending) WHERE {d.is_set('cancel_pending')}"),
        ("jobs_unpublished", f"jobs (publish_lease_ms) WHERE {d.is_unset('published')}"),
        ("outbox_due", "outbox (state, next_ms)"),
        ("outbox_job", "outbox (job_id)"),  # a job's deliveries: read with it, purged with it
    ]
