"""The jobs service for the gateway's lifespan: its store, callback dispatcher and housekeeping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from gateway.jobs.cancels import CANCEL_REPLAY_MS
from gateway.jobs.service import JobService
from gateway.services import Services
from gateway.settings import GatewaySettings
from gateway.store import JobStore, SqliteJobStore
from gateway.webhooks import CallbackDispatcher, Signer, UrlGuard
from protocol import names, now_ms
from transport.background import Background

log = logging.getLogger("rpcfleet.jobs")

# Unconfirmed jobs are settled, and finished ones past retention purged, this often: often
# enough that an unconfirmed job is settled within minutes, rarely enough to cost nothing.
HOUSEKEEPING_EVERY_S = 60


@asynccontextmanager
async def jobs_running(services: Services) -> AsyncIterator[JobService]:
    """Open the store, start the service (`services.jobs` while it runs), close in reverse."""
    settings = services.settings
    signer = Signer(settings.callback_secret) if settings.callback_secret else None
    guard = UrlGuard(settings.callback_allow_hosts)
    async with AsyncExitStack() as stack:
        store = await open_store(settings)
        stack.push_async_callback(store.close)
        log.info("job store %s: job replies arrive on %s", store.store_id,
                 names.replies_queue(store.store_id))
        dispatcher = None
        if signer is not None:
            dispatcher = await stack.enter_async_context(
                CallbackDispatcher(store, signer, guard, settings))
        service = JobService(settings, services.link, services.view, services.metrics, store,
                             dispatcher, signer, guard, services.tracing)
        services.events.job_handlers.append(service.outcomes.on_job_event)
        services.events.new_consumer_handlers.append(service.on_new_consumer)
        stack.push_async_callback(service.close)
        services.jobs = service
        stack.callback(setattr, services, "jobs", None)
        chores = Background()
        stack.push_async_callback(chores.stop)
        chores.start(_housekeeping(store, service, settings.job_retention))
        chores.start(service.followers.sweep_followed())
        yield service


async def open_store(settings: GatewaySettings) -> JobStore:
    """The store the settings name: PostgreSQL (shared by every gateway host) or SQLite."""
    dsn = settings.job_store
    if dsn is None:
        return SqliteJobStore(settings.state_dir / "jobs.sqlite3")
    if not dsn.startswith(("postgresql://", "postgres://")):
        raise ValueError(f"RPCFLEET_JOB_STORE must be a postgresql:// URL, not {dsn[:40]!r}")
    try:
        from gateway.store.postgres import PostgresJobStore
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise RuntimeError("RPCFLEET_JOB_STORE=postgresql://... needs the postgres extra: "
                           "pip install 'rpcfleet[postgres]'") from exc
    return await PostgresJobStore.open(dsn)


async def _housekeeping(store: JobStore, service: JobService, retention_s: float) -> None:
    while True:
        with contextlib.suppress(Exception):
            abandoned = await service.abandon_unpublished()
            if abandoned:
                log.warning("%s jobs never reached the broker (a gateway stopped while "
                            "submitting them): marked failed", abandoned)
            now = now_ms()
            removed = await store.purge(now - int(retention_s * 1000), now - CANCEL_REPLAY_MS)
            if removed:
                log.info("purged %s finished jobs past retention", removed)
        await asyncio.sleep(HOUSEKEEPING_EVERY_S)
