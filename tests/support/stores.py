"""The job store specification's fixture: the same tests on both stores, a real SQLite file
and a real PostgreSQL database (a private server)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from gateway.store import JobStore, NewJob, SqliteJobStore

StoreFactory = Callable[[], Awaitable[JobStore]]


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Opens a store on one shared file or database (each call: another gateway process)."""
    if request.param == "sqlite":
        async def sqlite() -> JobStore:
            return SqliteJobStore(tmp_path / "jobs.sqlite3")

        return sqlite
    dsn = request.getfixturevalue("pg_dsn")

    async def postgresql() -> JobStore:
        from gateway.store.postgres import PostgresJobStore

        return await PostgresJobStore.open(dsn)

    return postgresql


def new_job(job_id: str, **extra: object) -> NewJob:
    return NewJob(id=job_id, method="echo", created_ms=1_000, **extra)  # type: ignore[arg-type]
