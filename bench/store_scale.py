"""The job store when full: per-job costs at 10 thousand and at 1 million jobs, on SQLite and on
PostgreSQL (issue 22, #2: within 2x of each other is the target).

    ./run bench store_scale [--sizes 10000,1000000] [--ops 300] [--stores sqlite,postgresql]
                            [--ids time,random]

For each store and size: seed that many finished jobs, each with one callback delivery (an outbox
row) and two events, with SQL (`seed`); analyse; then time, per job, over `--ops` jobs:

- submit: `create` + `mark_published` (what `POST /v1/jobs` writes)
- read: `get` + `events` (a poll, a follower's catch-up)
- finish: `started` + `progress` + `finish` (a worker's events and its reply)
- callback: `claim_deliveries` + `delivery_outcome`
- purge: `purge` of jobs past retention, in the store's batches of `PURGE_BATCH`; and the longest
  single batch, which is how long the purge holds the write lock at a time.

`--ids`: the ids the rows get: `time` as the gateway makes them (`gateway.ids`: the creation
time's milliseconds, then random bits), `random` as it made them before 1.2 (all random).

PostgreSQL runs as a private server (Debian's package, initdb + pg_ctl on loopback, the test
suite's `tests.support.postgres`); SQLite is a file in a temporary directory (synchronous=FULL,
as the gateway runs it: each commit is one fsync). Prints one table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from gateway.ids import time_ordered_id
from gateway.store import JobStore, NewJob, SqliteJobStore
from protocol import JobStatus


def seed_sql(rows: int, postgres: bool, ids: str) -> str:
    series = (f"generate_series(1, {rows}) AS i" if postgres else
              f"(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})"
              f" SELECT i FROM n)")
    if postgres:
        noise, stamp = "substr(md5(random()::text), 1, 20)", "lpad(to_hex(1000 + i), 12, '0')"
        whole = "md5(random()::text)"
    else:
        noise, stamp = "lower(hex(randomblob(10)))", "printf('%012x', 1000 + i)"
        whole = "lower(hex(randomblob(16)))"
    job_id = f"{stamp} || {noise}" if ids == "time" else whole
    return f"""
INSERT INTO jobs (id, method, status, created_ms, finished_ms, attempts, callback_url)
    SELECT {job_id}, 'echo', 'succeeded', 1000 + i, 1000 + i, 1, 'http://127.0.0.1:9/h'
    FROM {series};
INSERT INTO outbox (id, job_id, url, state, next_ms, finished_ms)
    SELECT 'msg_' || id, id, callback_url, 'delivered', finished_ms, finished_ms FROM jobs;
INSERT INTO events (job_id, seq, event) SELECT id, 1, 'queued' FROM jobs;
INSERT INTO events (job_id, seq, event) SELECT id, 2, 'succeeded' FROM jobs;
ANALYZE;
"""


async def per_job(ops: int, step: Callable[[int], Awaitable[object]]) -> float:
    """Microseconds per call of `step`, over `ops` calls."""
    started = time.perf_counter()
    for i in range(ops):
        await step(i)
    return (time.perf_counter() - started) / ops * 1e6


async def measure(store: JobStore, ops: int, seeded: list[str], ids: str) -> dict[str, float]:
    base = 10**12
    figures: dict[str, float] = {}
    fresh = [time_ordered_id(base + i) if ids == "time" else os.urandom(16).hex()
             for i in range(ops)]

    async def submit(i: int) -> None:
        await store.create(NewJob(id=fresh[i], method="echo", created_ms=base + i,
                                  callback_url="http://127.0.0.1:9/h"))
        await store.mark_published(fresh[i])

    async def read(i: int) -> None:
        await store.get(seeded[i % len(seeded)])
        await store.events(seeded[(i * 7) % len(seeded)])

    async def finish(i: int) -> None:
        await store.started(fresh[i], "w:p:0", 1, base + i)
        await store.progress(fresh[i], 0.5, "half", 1, 1)
        await store.finish(fresh[i], JobStatus.SUCCEEDED, {"n": i}, None, base + i + 1)

    async def callback(i: int) -> None:
        for delivery in await store.claim_deliveries(base + 10**6, 1, 60_000):
            await store.delivery_outcome(delivery, delivered=True, error=None, retry_at_ms=None)

    figures["submit"] = await per_job(ops, submit)
    figures["read"] = await per_job(ops, read)
    figures["finish"] = await per_job(ops, finish)
    figures["callback"] = await per_job(ops, callback)
    batches = []
    size = store.purge_batch
    for k in range(10):  # one batch's worth of the oldest jobs each
        started = time.perf_counter()
        removed = await store.purge(1001 + (k + 1) * size, 0)
        batches.append(time.perf_counter() - started)
        assert removed == size, removed
    figures["purge"] = sum(batches) / (10 * size) * 1e6
    figures["purge batch max ms"] = max(batches) * 1000
    figures["purge batch median ms"] = statistics.median(batches) * 1000
    return figures


SAMPLE = "SELECT id FROM jobs ORDER BY random() LIMIT 2000"  # what the reads look up


async def sqlite_case(rows: int, ops: int, folder: Path, ids: str) -> dict[str, float]:
    path = folder / f"jobs-{rows}-{ids}.sqlite3"
    SqliteJobStore(path)
    with sqlite3.connect(path) as db:
        db.executescript(seed_sql(rows, postgres=False, ids=ids))
        seeded = [row[0] for row in db.execute(SAMPLE)]
    store = SqliteJobStore(path)
    try:
        return await measure(store, ops, seeded, ids)
    finally:
        await store.close()


async def postgres_case(rows: int, ops: int, dsn: str, ids: str) -> dict[str, float]:
    import psycopg

    from gateway.store.postgres import PostgresJobStore

    store = await PostgresJobStore.open(dsn)
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as db:
            await db.execute(seed_sql(rows, postgres=True, ids=ids))
            seeded = [row[0] for row in await (await db.execute(SAMPLE)).fetchall()]
        return await measure(store, ops, seeded, ids)
    finally:
        await store.close()


COLUMNS = ("submit", "read", "finish", "callback", "purge", "purge batch median ms",
           "purge batch max ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--ops", type=int, default=300)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--ids", default="time", choices=("time", "random"))
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    stores = args.stores.split(",")
    results: dict[tuple[str, int], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="rpcfleet-store-") as folder:
        Path(folder).chmod(0o755)  # the postgres user must reach its data directory
        if "sqlite" in stores:
            for rows in sizes:
                results[("sqlite", rows)] = asyncio.run(sqlite_case(rows, args.ops,
                                                                    Path(folder), args.ids))
                print(f"sqlite {rows}: {results[('sqlite', rows)]}", flush=True)
        if "postgresql" in stores:
            from tests.support.postgres import private_server

            servers = private_server(Path(folder) / "pg")
            server = next(servers)
            try:
                for rows in sizes:
                    dsn = server.create_database()
                    results[("postgresql", rows)] = asyncio.run(postgres_case(rows, args.ops,
                                                                              dsn, args.ids))
                    print(f"postgresql {rows}: {results[('postgresql', rows)]}", flush=True)
            finally:
                server.stop()
    print()
    print("| store | jobs | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for (store, rows), figures in results.items():
        print(f"| {store} | {rows:,} | " + " | ".join(
            f"{figures[c]:,.1f}" for c in COLUMNS) + " |")
    print("\nper-job figures in µs; purge batches (250 jobs on SQLite, 500 on PostgreSQL) in ms")
    for store in stores:
        if (store, sizes[0]) in results and (store, sizes[-1]) in results:
            small, big = results[(store, sizes[0])], results[(store, sizes[-1])]
            ratios = ", ".join(f"{c} {big[c] / small[c]:.2f}x" for c in COLUMNS[:5])
            print(f"{store}: {sizes[-1]:,} vs {sizes[0]:,}: {ratios}")


if __name__ == "__main__":
    main()
