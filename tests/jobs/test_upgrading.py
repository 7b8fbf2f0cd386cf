"""What a fleet with a populated store meets when it upgrades (docs/upgrading.md): a new version's
indexes are built on PostgreSQL while the gateways of other hosts go on writing."""

from __future__ import annotations

import asyncio

import psycopg

from gateway.store.dialect import POSTGRES
from gateway.store.postgres import PostgresJobStore
from gateway.store.schema import indexes
from tests.support.waiting import async_wait_for

NEW_INDEX = "outbox_job"


async def _insert_job(db: psycopg.AsyncConnection[object], job_id: str) -> None:
    await db.execute("INSERT INTO jobs (id, method, status, created_ms) "
                     "VALUES (%s, 'echo', 'queued', 0)", (job_id,))
    await db.execute("INSERT INTO outbox (id, job_id, url, next_ms, finished_ms) "
                     "VALUES (%s, %s, 'http://127.0.0.1:9/', 0, 0)", (f"msg_{job_id}", job_id))


async def test_a_new_index_is_built_while_other_gateways_write(pg_dsn: str) -> None:
    # A database of the earlier version: every table, not the new index.
    store = await PostgresJobStore.open(pg_dsn)
    await store.close()
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as admin:
        await admin.execute(f"DROP INDEX {NEW_INDEX}")
        # A gateway of another host is mid-transaction on the outbox while the new one starts.
        async with await psycopg.AsyncConnection.connect(pg_dsn) as writing:
            await _insert_job(writing, "job_open")
            upgrading = asyncio.create_task(PostgresJobStore.open(pg_dsn))

            async def building() -> bool:
                row = await (await admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s "
                    "AND wait_event_type = 'Lock'", (f"CREATE INDEX%{NEW_INDEX}%",))).fetchone()
                return bool(row and row[0])

            await async_wait_for(building, timeout=30,
                                 what="the new index's build waiting on the open transaction")
            # Writes go on meanwhile: a plain CREATE INDEX would queue them behind its lock.
            await admin.execute("SET lock_timeout = '3s'")
            await _insert_job(admin, "job_during_build")
            assert not upgrading.done()
            await writing.commit()
        upgraded = await asyncio.wait_for(upgrading, timeout=30)
        await upgraded.close()
        valid = await (await admin.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
            (NEW_INDEX,))).fetchone()
        assert valid == (True,)


async def test_an_index_left_invalid_by_an_interrupted_build_is_built_again(pg_dsn: str) -> None:
    store = await PostgresJobStore.open(pg_dsn)
    await store.close()
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as admin:
        # What a concurrent build cut short leaves: the index, marked invalid (unused by plans).
        await admin.execute("UPDATE pg_index SET indisvalid = false "
                            "WHERE indexrelid = to_regclass(%s)", (NEW_INDEX,))
        store = await PostgresJobStore.open(pg_dsn)
        await store.close()
        rows = await (await admin.execute(
            "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c "
            "ON c.oid = i.indexrelid WHERE c.relname = ANY(%s)",
            ([name for name, _ in indexes(POSTGRES)],))).fetchall()
        assert sorted(rows) == sorted((name, True) for name, _ in indexes(POSTGRES))


async def test_a_jobs_table_of_1_1_gains_the_progress_column(pg_dsn: str) -> None:
    store = await PostgresJobStore.open(pg_dsn)
    await store.close()
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as admin:
        await admin.execute("ALTER TABLE jobs DROP COLUMN progress_n")  # as 1.1 made it
        await _insert_job(admin, "from_1_1")
        store = await PostgresJobStore.open(pg_dsn)
        assert await store.progress_recorded("from_1_1") == 0
        await store.close()
