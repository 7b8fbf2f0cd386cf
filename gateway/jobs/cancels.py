"""A job's cancel reaches the consumers that may hold its request: sent when asked, and replayed
from the store (where it waits while pending) after the broker connection comes back, and to
each consumer that announces itself later. A worker ignores a cancel it has seen before."""

from __future__ import annotations

import logging

from gateway.amqp.link import BrokerLink
from gateway.fleet.view import FleetView
from gateway.store import JobStore
from protocol import Cancel, Replayed, WorkerEntry, names, now_ms
from transport.background import Background

log = logging.getLogger("rpcfleet.jobs")

CANCEL_REPLAY_MS = 24 * 3600 * 1000  # a queued job's cancel is replayed for a day at most


class Cancels:
    def __init__(self, link: BrokerLink, view: FleetView, store: JobStore,
                 background: Background) -> None:
        self.link = link
        self.view = view
        self.store = store
        self._background = background
        link.when_connected(self._replay_on_reconnect)

    async def send(self, job_id: str, method: str, key: str | None = None) -> None:
        """To the pool serving `method` (or to `key`). Not connected: it raises, and the cancel
        is replayed to consumers when they announce themselves."""
        if key is None:
            key = names.control_key_for(self.view.pool_of(method))
        await self.link.send_control(Cancel(job_id=job_id), key)

    async def replay_all(self, *args: object) -> None:
        """After a reconnect: cancels stored while the broker was away reach every pool."""
        try:
            for job_id, method in await self.store.pending_cancels(now_ms() - CANCEL_REPLAY_MS):
                await self.send(job_id, method)
        except Exception as exc:  # the next reconnect, or new consumers, replay them again
            log.warning("could not replay cancels: %r", exc)

    async def _replay_on_reconnect(self, link: BrokerLink) -> None:
        assert link.connection is not None
        link.connection.reconnect_callbacks.add(self._replay_after_reconnect)

    def _replay_after_reconnect(self, *args: object) -> None:
        self._background.start(self.replay_all())

    async def to_consumer(self, entry: WorkerEntry) -> None:
        """A consumer that started later learns of cancels of jobs that may still be queued,
        then that it has heard them all (`Replayed`)."""
        key = names.control_worker_key(entry.id)
        for job_id, method in await self.store.pending_cancels(now_ms() - CANCEL_REPLAY_MS):
            if method in entry.methods:
                await self.send(job_id, method, key)
        await self.link.send_control(Replayed(), key)
