"""Recording outcomes: what comes back from the fleet, stored before it is acked.

Job replies arrive on this store's own `rpcfleet.replies.{store}` queue (competing consumers
across the gateway processes that share the store) and dead letters on its
`rpcfleet.dead-events.{store}` queue; both are also read from the 1.0 topology's shared queues.
Each outcome is stored idempotently and only then acked. An outcome the store cannot record now
(the database down, locked, full) is parked: republished, confirmed, to its queue's parking queue,
from which it expires back into its queue a few seconds later, and only then acked. It is never
handed back with a requeue: a quorum queue counts every return against its delivery limit (20
by default from RabbitMQ 4.0), and would drop the outcome of a job during a store outage.
The process that stores an outcome announces `job.{id}.finished` on
rpcfleet.events and wakes the callback outbox. Workers' `started` and `progress` events are
recorded here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from gateway.amqp.link import BrokerLink
from gateway.fleet.view import FleetView
from gateway.jobs.hub import JobHub
from gateway.jobs.ordering import Lanes
from gateway.jobs.outcomes import from_dead_letter, from_reply, reply_facts, starts_vouched
from gateway.metrics import Metrics
from gateway.store import JobStore
from gateway.webhooks import CallbackDispatcher
from protocol import ErrorBody, JobEvent, JobStatus, names, now_ms
from protocol.queues import (
    PARK_MS,
    QueueType,
    durable_queue_arguments,
    parking_queue_arguments,
)
from transport.copies import copied_properties
from transport.publishing import Confirmed
from transport.settling import Decision, settle
from transport.waiting import poll

log = logging.getLogger("rpcfleet.jobs")

PARK_FAILED_PAUSE_S = 1.0  # before a requeue, when even parking failed (the broker going)
REPLY_PREFETCH = 64  # each outcome is one small store write: batch the broker round trips
# A reply waits at most this long for the progress events its run sent before it (they travel
# on rpcfleet.events), polling the store this often.
PROGRESS_WAIT_S = 2.0
PROGRESS_POLL_S = 0.02


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
        self._channel: AbstractChannel | None = None  # the replies' (one per set-up attempt)
        self._watched_pools: set[str] = set()
        self._in_order = Lanes()  # job id -> its events, recorded in arrival order
        link.when_connected(self._consume)

    async def _consume(self, link: BrokerLink) -> None:
        """Once connected; again after a failure part-way (a node lost mid-set-up, a queue the
        broker refused): the earlier attempt's channel goes first, with what it consumed."""
        assert link.connection is not None
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()
            self._watched_pools = set()
        channel = self._channel = await link.connection.channel(publisher_confirms=False)
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
        # its own queue (parked when this store does not know the job, for the host that
        # does), and the shared dead-letter copy, which workers keep filling.
        legacy = await channel.declare_queue(names.REPLIES_QUEUE, durable=True, arguments=shared)
        legacy_dead = await channel.declare_queue(names.DEAD_EVENTS_QUEUE, durable=True,
                                                  arguments=shared)
        for queue, record in ((replies, self._on_reply), (dead, self._on_dead_letter),
                              (legacy, self._on_shared_reply),
                              (legacy_dead, self._on_dead_letter)):
            await channel.declare_queue(
                names.parking_queue(queue.name), durable=True,
                arguments=parking_queue_arguments(queue.name, self.queue_type))
            await queue.consume(self._settled(record, queue.name))
        self.ready.set()

    async def watch_pool(self, pool: str) -> None:
        """Bind this store's dead-letter queue to a pool's key on rpcfleet.dlx (idempotent)."""
        if self._dead_events is not None and pool not in self._watched_pools:
            await self._dead_events.bind(names.DEAD_LETTER_EXCHANGE, routing_key=pool)
            self._watched_pools.add(pool)

    def _settled(self, record: Callable[[AbstractIncomingMessage], Awaitable[None]],
                 queue: str) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        """Every outcome delivery from `queue` is settled: acked once stored (by `record`), or,
        when the store fails (locked, disk full, database down), parked, never left unacked (64
        such would stall this consumer for good)."""

        async def consume(message: AbstractIncomingMessage) -> None:
            try:
                await record(message)
            except Exception as exc:
                log.warning("could not store the outcome of %s (%r); parking it for %.0f s",
                            message.correlation_id, exc, PARK_MS / 1000)
                await self._park(message, queue)

        return consume

    async def _park(self, message: AbstractIncomingMessage, queue: str) -> None:
        """Republish `message` to `queue`'s parking queue, confirmed, then ack it: it comes back
        to `queue` as a new message after PARK_MS. Only if even that fails (the broker going) is
        it handed back with a requeue."""
        properties = copied_properties(message, delivery_mode=2)
        try:
            confirm = await self.link.publish(
                message.body, "", names.parking_queue(queue), properties, confirm=True,
                timeout=self.link.settings.publish_timeout)
            if confirm is not Confirmed.ACKED:
                raise RuntimeError(f"parking {message.correlation_id} got {confirm!r}")
        except Exception as exc:
            log.warning("could not park the outcome of %s (%r); handing it back",
                        message.correlation_id, exc)
            await settle(message, Decision.REQUEUE, pause=PARK_FAILED_PAUSE_S)
            return
        await settle(message, Decision.ACK)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        job_id = message.correlation_id or ""
        status, result, error = from_reply(message.body)
        facts = reply_facts(message.headers or {})
        if facts.progress_events:
            await self._progress_recorded(job_id, facts.progress_events, facts.starts)
        await self.record(job_id, status, result, error, facts.worker,
                          at_ms=facts.finished_ms or now_ms(), attempt=facts.starts,
                          started_ms=facts.started_ms)
        if status is JobStatus.CANCELLED:
            await self.store.cancel_seen(job_id)
        await settle(message, Decision.ACK)  # only once the outcome is stored

    async def _on_shared_reply(self, message: AbstractIncomingMessage) -> None:
        if await self.store.get(message.correlation_id or "") is None:
            # Another host's job: back to the shared queue in a while, for its gateway.
            await self._park(message, names.REPLIES_QUEUE)
            return
        await self._on_reply(message)

    async def _on_dead_letter(self, message: AbstractIncomingMessage) -> None:
        # Every store gets a copy: record the jobs this one knows (idempotently), ack the rest.
        if names.is_job_reply_to(message.reply_to) and message.correlation_id:
            headers = dict(message.headers or {})
            job = await self.store.get(message.correlation_id)
            status, error = from_dead_letter(
                headers, started=job is not None and job.started_at is not None)
            await self.record(message.correlation_id, status, None, error, None,
                              attempt=starts_vouched(headers))
        await settle(message, Decision.ACK)  # sync calls' dead letters concern no job

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

    async def _progress_recorded(self, job_id: str, sent: int, attempt: int | None) -> None:
        """Wait (a little) until the run's `sent` progress events are recorded: they travel
        on rpcfleet.events, the reply on this store's queue, and a job's end comes after its
        progress in its log (an earlier run's count does not stand for this one's). Events
        lost on the way are not waited for past the bound."""
        async def recorded() -> bool:
            return await self.store.progress_recorded(job_id, attempt) >= sent

        if not await poll(recorded, PROGRESS_WAIT_S, PROGRESS_POLL_S):
            log.info("job %s ended after %s progress events, not all recorded within %s s; "
                     "recording its end", job_id, sent, PROGRESS_WAIT_S)

    async def on_job_event(self, key: str, body: bytes) -> None:
        """job.{id}.started / .progress from workers; .finished from other gateways."""
        try:
            event = JobEvent.model_validate_json(body)
        except ValueError:
            log.warning("ignoring a malformed job event on %s", key)
            return
        # One job's events are recorded in the order they arrived here (they are delivered in
        # the order the worker sent them, each as its own task): with every gateway process
        # recording every event, a process records event n only once n - 1 is in the store.
        async with self._in_order.hold(event.job_id):
            changed = True
            if event.kind == "started":
                changed = await self.store.started(event.job_id, event.worker,
                                                   event.attempt or 1, event.at)
            elif event.kind == "progress":
                changed = await self.store.progress(event.job_id, event.fraction or 0.0,
                                                    event.note or "", event.n, event.attempt)
        if changed:
            self.hub.notify(event.job_id)
