"""Sends callbacks from the store's outbox: claims due deliveries under a lease (so two gateway
processes never send one at once, and a dead process's deliveries resume elsewhere or after a
restart), sends them concurrently, records each outcome, schedules retries with jittered
exponential backoff until the window ends. Never holds an AMQP delivery while doing so.

A delivery is claimed only when a sending slot is free for it, so its lease starts with its
attempt; the lease is fenced: an outcome is written only while the lease is still that claim's
(`JobStore.delivery_outcome`), so a late attempt never overwrites the next claim's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from gateway.settings import GatewaySettings
from gateway.store import Delivery, JobStore
from gateway.webhooks.signing import Signer
from gateway.webhooks.urls import UrlGuard
from protocol import backoff, codec, now_ms
from transport import background
from transport.background import Background

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("rpcfleet.callbacks")

POLL_S = 0.5  # a retry falls due without a notification: look at the outbox this often
# A lease outlives its attempt (bounded in total by the attempt timeout) by this margin, so the
# same callback is never sent twice at once; a dead process's deliveries resume after it.
LEASE_MARGIN_MS = 60_000
CLAIM_BATCH = 64


class CallbackDispatcher:
    def __init__(self, store: JobStore, signer: Signer, guard: UrlGuard,
                 settings: GatewaySettings) -> None:
        self.store = store
        self.signer = signer
        self.guard = guard
        self.settings = settings
        self.lease_ms = int(settings.callback_attempt_timeout * 1000) + LEASE_MARGIN_MS
        self._wake = asyncio.Event()
        self._freed = asyncio.Event()  # a sending slot came free
        self._task: asyncio.Task[None] | None = None
        self._sending = Background()
        self._client: httpx.AsyncClient | None = None

    def notify(self) -> None:
        self._wake.set()

    async def __aenter__(self) -> CallbackDispatcher:
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await background.stop(self._task)
        await self._sending.stop()
        if self._client is not None:
            await self._client.aclose()

    def _http(self) -> httpx.AsyncClient:
        """The HTTP client, made for the first callback: httpx (with the command-line extras it
        imports when they are installed) would cost every gateway process 2.6 MiB of RSS, and
        many never send a callback."""
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        return self._client

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            free = self.settings.callback_concurrency - len(self._sending)
            if free <= 0:  # a slow receiver holds one slot, not the loop
                self._freed.clear()
                await self._freed.wait()
                continue
            limit = min(free, CLAIM_BATCH)
            try:
                due = await self.store.claim_deliveries(None, limit, self.lease_ms)
            except Exception:
                log.exception("could not read the outbox")
                due = []
            for delivery in due:
                self._sending.start(self._deliver(delivery)).add_done_callback(self._sent)
            if len(due) < limit:  # nothing more is due now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_S)

    def _sent(self, _: asyncio.Future[Any]) -> None:
        self._freed.set()

    async def _deliver(self, delivery: Delivery) -> None:
        try:
            job = await self.store.get(delivery.job_id)
            if job is None:
                return
            attempt = delivery.attempts + 1
            body = codec.dumps(job.model_dump(mode="json"))
            from gateway.webhooks.sender import send  # with httpx: see _http

            result = await send(self._http(), self.guard, self.signer, delivery.url,
                                delivery.id, job.id, attempt, body,
                                self.settings.callback_attempt_timeout)
            retry_at = None
            if not result.delivered and result.retry:
                # Full jitter: the retries of many failed receivers spread out.
                delay = backoff.delay(attempt, self.settings.callback_backoff,
                                      self.settings.callback_backoff_max)
                retry_at = now_ms() + int(delay * 1000)
                window_ends = delivery.finished_ms + int(self.settings.callback_window * 1000)
                if retry_at > window_ends:
                    retry_at = None
            if not await self.store.delivery_outcome(delivery, delivered=result.delivered,
                                                     error=result.error, retry_at_ms=retry_at):
                log.warning("callback %s for job %s, attempt %s: its lease ran out while it was "
                            "sent; the outcome (%s) is left to the claim that took it over",
                            delivery.id, job.id, attempt,
                            "delivered" if result.delivered else result.error)
            elif not result.delivered:
                log.warning("callback %s for job %s, attempt %s: %s%s", delivery.id, job.id,
                            attempt, result.error, "" if retry_at else " (giving up)")
        except Exception:
            log.exception("callback %s failed unexpectedly; its lease will expire", delivery.id)

