"""The PostgreSQL store's sessions: the user's connection options are kept beside the store's
timeouts, and a database that goes silent (a dead host, a partition: no answer, no reset) fails
a store call as an outage in seconds, then the store works again once it answers."""

from __future__ import annotations

import time
from urllib.parse import quote

import psycopg
import pytest

from gateway.store import NewJob
from gateway.store.base import is_outage
from gateway.store.postgres import PostgresJobStore
from tests.support.postgres import PostgresServer
from tests.support.proxy import proxied


async def test_the_dsns_own_options_are_kept_beside_the_stores_timeouts(pg_dsn: str) -> None:
    """`options=-csearch_path=app` keeps the store in its schema (two deployments apart by
    schema on one database); the store's lock and statement timeouts apply too."""
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute("CREATE SCHEMA app")
    store = await PostgresJobStore.open(pg_dsn + "?options=" + quote("-csearch_path=app"))
    try:
        await store.create(NewJob(id="j", method="echo", created_ms=1_000))
        async with store._pool.connection() as db:
            shown = [(await (await db.execute(f"SHOW {name}")).fetchone())[0]
                     for name in ("search_path", "statement_timeout", "lock_timeout")]
    finally:
        await store.close()
    assert shown == ["app", "30s", "5s"]
    with psycopg.connect(pg_dsn) as db:
        tables = {(row[0], row[1]) for row in db.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_name = 'jobs'")}
    assert tables == {("app", "jobs")}


@pytest.mark.slow
async def test_a_database_gone_silent_fails_a_store_call_in_seconds_then_recovers(
        postgres: PostgresServer, pg_dsn: str) -> None:
    name = pg_dsn.rsplit("/", 1)[1]
    with proxied(postgres.port) as link:
        store = await PostgresJobStore.open(
            f"postgresql://postgres@127.0.0.1:{link.port}/{name}")
        store.call_deadline_s = 2  # the default: the statement timeout and 2 s (32 s)
        try:
            await store.create(NewJob(id="j", method="echo", created_ms=1_000))
            link.stall()  # nothing passes, nobody is told
            started = time.monotonic()
            with pytest.raises(Exception) as failed:
                await store.get("j")
            took = time.monotonic() - started
            link.resume()
            job = await store.get("j")  # a connection that answers
        finally:
            await store.close()
    assert is_outage(failed.value), repr(failed.value)  # answered 503, an outcome parked
    # the bound, then psycopg's cancel request (5 s) and its wait for the query (5 s) at most
    assert took < 2 + 10 + 2, took
    assert job is not None and job.id == "j"


async def test_after_the_database_restarts_the_first_call_gets_a_live_connection(
        postgres: PostgresServer, pg_dsn: str) -> None:
    """A restart (an upgrade, a failover to the same address) closes every pooled connection on
    the server's side: each gateway process's next calls must not fail on them one by one (a
    progress event every process records would be lost everywhere at once)."""
    store = await PostgresJobStore.open(pg_dsn)
    try:
        await store.create(NewJob(id="j", method="echo", created_ms=1_000))
        postgres.stop()
        postgres.start_again()
        job = await store.get("j")
        assert await store.started("j", "w:p:0", 1, 2_000)
    finally:
        await store.close()
    assert job is not None and job.id == "j"
