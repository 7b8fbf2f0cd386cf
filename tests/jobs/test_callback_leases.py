"""Callbacks are leased only when they are about to be sent (issue 22, #6).

A dispatcher used to claim 64 due deliveries at once under a lease of the attempt timeout + 60 s,
then send `RPCFLEET_CALLBACK_CONCURRENCY` of them at a time: behind slow receivers the last ones
started after their lease had ended, when another gateway process could claim and send them
too. Now it claims only as many as it has free sending slots."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.settings import GatewaySettings
from gateway.store import NewJob, SqliteJobStore
from gateway.webhooks import CallbackDispatcher, Signer, UrlGuard
from protocol import JobStatus, now_ms
from tests.support.jobs import SECRET
from tests.support.receiver import HANG, Receiver
from tests.support.waiting import async_wait_for


async def test_only_the_callbacks_being_sent_are_leased(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.mode, receiver.hang_s = HANG, 4  # every receiver is slow: the slots fill up
    path = tmp_path / "jobs.sqlite3"
    store = SqliteJobStore(path)
    for i in range(10):
        await store.create(NewJob(id=f"j{i}", method="echo", created_ms=now_ms(),
                                  callback_url=f"{receiver.url}/hook"))
        await store.finish(f"j{i}", JobStatus.SUCCEEDED, i, None, now_ms())
    settings = GatewaySettings(callback_concurrency=2, callback_attempt_timeout=3,
                               callback_secret=SECRET)
    async with CallbackDispatcher(store, Signer(SECRET), UrlGuard(["127.0.0.1"]), settings):
        await async_wait_for(lambda: len(receiver.requests) == 2, timeout=10,
                             what="two callbacks to be under way")
        with sqlite3.connect(path) as db:
            leased = db.execute("SELECT count(*) FROM outbox WHERE lease_ms > ?",
                                (now_ms(),)).fetchone()[0]
        assert leased == 2  # the two being sent; the other eight stay free to claim
        # As the slots free up the rest are sent, two at a time, each once.
        await async_wait_for(lambda: len(receiver.requests) == 10, timeout=40,
                             what="every callback to be tried")
    assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(
        {r.headers["webhook-id"] for r in receiver.requests})
    await store.close()
