"""Recording outcomes: what comes back from the fleet, stored before it is acked.

Job replies arrive on this store's own `rpcfleet.replies.{store}` queue (competing consumers
across the gateway processes that share the store) and dead letters on its
`rpcfleet.dead-events.{store}` queue; both are also read from the 1.0 topology's shared queues.
Each outcome is stored idempotently and only then acked; a store that fails hands the delivery
back after a backoff. The process that stores an outcome announces `job.{id}.finished` on
rpcfleet.events and wakes the callback outbox. Workers' `started` and `progress` events are
recorded here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from gateway.amqp.link import BrokerLink
from gateway.fleet.view import FleetView
from gateway.jobs.hub import JobHub
from gateway.jobs.outcomes import from_dead_letter, from_reply, reply_facts
from gateway.metrics import Metrics
from gateway.store import JobStore
from gateway.webhooks import CallbackDispatcher
from protocol import ErrorBody, JobEvent, JobStatus, names, now_ms
from protocol.queues import QueueType, durable_queue_arguments

log = logging.getLogger("rpcfleet.jobs")

SHARED_HANDBACK_S = 1.0  # before handing another host's reply back to the shared queue
STORE_BACKOFF_MAX_S = 10.0  # a failing store is retried at least this often
REPLY_PREFETCH = 64  # each outcome is one small store write: batch the broker round trips


class OutcomeRecorder:
    def __init__(self, link: BrokerLink, store: JobStore, hub: JobHub, metrics: Metrics,
                 dispatcher: CallbackDispatcher | None, view: FleetView,
                 queue_type: QueueType) -> None:
        self.link = link
        self.store = store
        self.hub = hub
        self.metrics = metrics
        self.dispatcher = dispatcher
        self.view = view  # the pools known so far: their dead letters are watched
        self.queue_type = queue_type
        self.replies_queue = names.replies_queue(store.store_id)
        self.dead_events_queue = names.dead_events_queue(store.store_id)
        # No job is published before its reply queue exists: a reply to a missing queue is lost.
        self.ready = asyncio.Event()
        self._dead_events: AbstractQueue | None = None
        self._watched_pools: set[str] = set()
        self._store_failures = 0  # in a row: the backoff grows with them
        link.when_connected(self._consume)

    async def _consume(self, link: BrokerLink) -> None:
        assert link.connection is not None
        channel = await link.connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=REPLY_PREFETCH)
        shared = durable_queue_arguments(self.queue_type)
        # This store's own queues: every job reply and dead letter that lands there is one this
        # store can record, whatever number of gateway hosts share the broker.
        replies = await channel.declare_queue(self.replies_queue, durable=True, arguments=shared)
        dead = await channel.declare_queue(self.dead_events_queue, durable=True,
                                           arguments=shared)
        self._dead_events = dead
        for pool in self.view.pools():
            await self.watch_pool(pool)
        # The shared queues of the 1.0 topology: replies of jobs submitted before a gateway had
        # its own queue (handed back when this store does not know the job, for the host that
        # does), and the shared dead-letter copy, which workers keep filling.
        legacy = await channel.declare_queue(names.REPLIES_QUEUE, durable=True, arguments=shared)
        legacy_dead = await channel.declare_queue(names.DEAD_EVENTS_QUEUE, durable=True,
                                                  arguments=shared)
        await replies.consume(self._settled(self._on_reply))
        await dead.consume(self._settled(self._on_dead_letter))
        await legacy.consume(self._settled(self._on_shared_reply))
        await legacy_dead.consume(self._settled(self._on_dead_letter))
        self.ready.set()

    async def watch_pool(self, pool: str) -> None:
        """Bind this store's dead-letter queue to a pool's key on rpcfleet.dlx (idempotent)."""
        if self._dead_events is not None and pool not in self._watched_pools:
            await self._dead_events.bind(names.DEAD_LETTER_EXCHANGE, routing_key=pool)
            self._watched_pools.add(pool)

    def _settled(self, record: Callable[[AbstractIncomingMessage], Awaitable[None]]
                 ) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        """Every outcome delivery is settled: acked once stored (by `record`), or, when the
        store fails (locked, disk full, database down), handed back to the queue after a
        backoff, never left unacked (64 such would stall this consumer for good)."""

        async def consume(message: AbstractIncomingMessage) -> None:
            try:
                await record(message)
            except Exception as exc:
                self._store_failures += 1
                wait = min(STORE_BACKOFF_MAX_S, 0.1 * 2 ** min(self._store_failures, 10))
                log.warning("could not store the outcome of %s (%r); handing it back in "
                            "%.1f s", message.correlation_id, exc, wait)
                await asyncio.sleep(random.uniform(wait / 2, wait))
                with contextlib.suppress(Exception):  # a closed channel hands it back anyway
                    await message.nack(requeue=True)
                return
            self._store_failures = 0

        return consume

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        job_id = message.correlation_id or ""
        status, result, error = from_reply(message.body)
        facts = reply_facts(message.headers or {})
        await self.record(job_id, status, result, error, facts.worker,
                          at_ms=facts.finished_ms or now_ms(), attempt=facts.attempt,
                          started_ms=facts.started_ms)
        if status is JobStatus.CANCELLED:
            await self.store.cancel_seen(job_id)
        await message.ack()  # only once the outcome is stored

    async def _on_shared_reply(self, message: AbstractIncomingMessage) -> None:
        if await self.store.get(message.correlation_id or "") is None:
            await asyncio.sleep(SHARED_HANDBACK_S)  # another host's job: let its gateway take it
            await message.nack(requeue=True)
            return
        await self._on_reply(message)

    async def _on_dead_letter(self, message: AbstractIncomingMessage) -> None:
        # Every store gets a copy: record the jobs this one knows (idempotently), ack the rest.
        if names.is_job_reply_to(message.reply_to) and message.correlation_id:
            status, error = from_dead_letter(dict(message.headers or {}))
            await self.record(message.correlation_id, status, None, error, None)
        await message.ack()  # sync calls' dead letters concern no job

    async def record(self, job_id: str, status: JobStatus, result: Any,
                     error: ErrorBody | None, worker: str | None, *, at_ms: int | None = None,
                     attempt: int | None = None, started_ms: int | None = None) -> None:
        """A job's final state, stored once (a redelivered outcome, or one for a job already
        final, changes nothing); then its counter, its callback, its followers and the
        `finished` announcement for the other gateway processes."""
        method = await self.store.finish(job_id, status, result, error, at_ms or now_ms(),
                                         worker, attempt, started_ms)
        if method is None:
            return
        self.metrics.jobs.labels(method, status).inc()
        if self.dispatcher is not None:
            self.dispatcher.notify()
        self.hub.notify(job_id)
        await self.link.send_event(JobEvent(job_id=job_id, kind="finished", at=now_ms(),
                                            status=status, worker=worker),
                                   names.job_event_key(job_id, "finished"))

    async def on_job_event(self, key: str, body: bytes) -> None:
        """job.{id}.started / .progress from workers; .finished from other gateways."""
        try:
            event = JobEvent.model_validate_json(body)
        except ValueError:
            log.warning("ignoring a malformed job event on %s", key)
            return
        changed = True
        if event.kind == "started":
            changed = await self.store.started(event.job_id, event.worker, event.attempt or 1,
                                               event.at)
        elif event.kind == "progress":
            changed = await self.store.progress(event.job_id, event.fraction or 0.0,
                                                event.note or "")
        if changed:
            self.hub.notify(event.job_id)
