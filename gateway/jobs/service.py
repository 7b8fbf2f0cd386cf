"""The jobs service of one gateway process: submit, follow, cancel; record outcomes.

Outcomes arrive on `rpcfleet.replies` (competing consumers across gateway processes) and
`rpcfleet.dead-events`; each is stored idempotently and only then acked. The gateway that
stores an outcome announces `job.{id}.finished`, and callbacks leave from the outbox.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from dataclasses import replace
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from gateway.amqp.link import BrokerLink
from gateway.amqp.rpc import publish_confirmed, request_properties
from gateway.calls import json_object
from gateway.errors import BadRequest, Conflict, NotFound, Overloaded
from gateway.fleet.view import FleetView
from gateway.jobs.hub import JobHub
from gateway.jobs.outcomes import from_dead_letter, from_reply, reply_facts
from gateway.metrics import Metrics
from gateway.store import IdempotencyConflict, JobStore, NewJob
from gateway.webhooks import CallbackDispatcher, CallbackUrlRefused, Signer, UrlGuard
from protocol import (
    Cancel,
    ErrorBody,
    Job,
    JobEvent,
    JobStatus,
    JobSubmission,
    Replayed,
    Request,
    WorkerEntry,
    codec,
    names,
    now_ms,
)
from protocol.queues import durable_queue_arguments, job_message_priority
from rpcfleet.settings import GatewaySettings

log = logging.getLogger("rpcfleet.jobs")

REPLY_PREFETCH = 64  # each outcome is one small SQLite write: batch the broker round trips
CANCEL_REPLAY_MS = 24 * 3600 * 1000  # a queued job's cancel is replayed for a day at most
ABANDON_AFTER_MS = 3600 * 1000  # an Idempotency-Key retry within an hour still publishes it


def body_hash(method: str, raw: bytes) -> str:
    """What one Idempotency-Key is bound to: the method and the exact body."""
    return hashlib.sha256(method.encode() + b"\0" + raw).hexdigest()


class JobService:
    def __init__(self, settings: GatewaySettings, link: BrokerLink, view: FleetView,
                 metrics: Metrics, store: JobStore, dispatcher: CallbackDispatcher | None,
                 signer: Signer | None, guard: UrlGuard) -> None:
        self.settings = settings
        self.link = link
        self.view = view
        self.metrics = metrics
        self.store = store
        self.dispatcher = dispatcher
        self.signer = signer
        self.guard = guard
        self.hub = JobHub()
        link.when_connected(self._consume)

    # -- submit -------------------------------------------------------------------------------
    async def submit(self, method: str, raw: bytes, idempotency_key: str | None,
                     trace: dict[str, str] | None = None) -> tuple[Job, bool]:
        data = json_object(raw, '{"params": {...}, ...}')
        try:
            submission = JobSubmission.model_validate(data)
        except ValueError as exc:
            raise BadRequest(str(exc).replace("\n", " ")) from None
        if submission.callback_url is not None:
            if self.signer is None:
                raise BadRequest("callback_url needs RPCFLEET_CALLBACK_SECRET on the gateway")
            try:
                await self.guard.check(submission.callback_url)
            except CallbackUrlRefused as exc:
                raise BadRequest(str(exc)) from None
        timeout = submission.timeout or self.settings.job_timeout_default
        created = now_ms()
        job = NewJob(
            id=os.urandom(16).hex(), method=method, created_ms=created,
            priority=submission.priority,
            deadline_ms=created + int(timeout * 1000) if timeout else None,
            callback_url=submission.callback_url, idempotency_key=idempotency_key,
            body_hash=body_hash(method, raw) if idempotency_key else None,
            publish_lease_ms=created + self._publish_lease_ms)
        try:
            stored, is_new = await self.store.create(job)
        except IdempotencyConflict as exc:
            raise BadRequest(str(exc)) from None
        params = codec.dumps(submission.params)
        if is_new:
            try:
                await self._publish(job, params, trace)
            except BaseException:
                await self.store.delete(job.id)  # never published: the job never existed
                raise
            return stored, True
        claim = await self.store.claim_publish(stored.id, created, self._publish_lease_ms)
        if claim == "held":
            raise Overloaded("the same submission is being published by another request",
                             call_id=stored.id)
        if claim == "claimed":
            # The same key and body again, for a job whose request the broker never confirmed:
            # its submitter stopped or failed mid-way, so no caller was told 202. Publish it now,
            # under the original id.
            try:
                await self._publish(replace(job, id=stored.id), params, trace)
            except BaseException:
                await self.store.release_publish(stored.id)
                raise
        return stored, False

    @property
    def _publish_lease_ms(self) -> int:
        """How long a submitter owns the publish: past its publish timeout, it has given up."""
        return int(self.settings.publish_timeout * 2000)

    async def _publish(self, job: NewJob, params: bytes,
                       trace: dict[str, str] | None = None) -> None:
        properties = request_properties(Request(job.id, job.method, names.REPLIES_QUEUE,
                                                job.deadline_ms, persistent=True, trace=trace,
                                                priority=job_message_priority(
                                                    job.priority, self.settings.queue_type)))
        await publish_confirmed(self.link, self.metrics, job.method, params, properties, job.id,
                                self.settings.publish_timeout)
        await self.store.mark_published(job.id)

    async def abandon_unpublished(self) -> int:
        """Fail queued jobs whose requests never reached the broker and nobody resubmitted
        (their submitter stopped mid-way, and no caller was given their id)."""
        now = now_ms()
        return await self.store.abandon_unpublished(now - ABANDON_AFTER_MS, now)

    # -- follow -------------------------------------------------------------------------------
    async def get(self, job_id: str) -> Job:
        job = await self.store.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        return job

    async def wait_terminal(self, job_id: str, seconds: float) -> Job:
        event = self.hub.follow(job_id)
        try:
            deadline = asyncio.get_running_loop().time() + seconds
            while True:
                job = await self.get(job_id)
                remaining = deadline - asyncio.get_running_loop().time()
                if job.status.terminal or remaining <= 0:
                    return job
                event.clear()
                try:  # woken by an outcome; the timeout also covers outcomes stored elsewhere
                    await asyncio.wait_for(event.wait(), min(remaining, 1.0))
                except TimeoutError:
                    pass
        finally:
            self.hub.unfollow(job_id, event)

    # -- cancel -------------------------------------------------------------------------------
    async def cancel(self, job_id: str) -> Job:
        job = await self.get(job_id)
        if job.status.terminal:
            raise Conflict(f"job {job_id} already ended: {job.status}")
        if job.status is JobStatus.QUEUED:
            await self.store.cancel_queued(job_id, now_ms())
        await self._send_cancel(job_id, job.method)
        job = await self.get(job_id)
        self.hub.notify(job_id)
        return job

    async def _send_cancel(self, job_id: str, method: str, key: str | None = None) -> None:
        if key is None:
            key = names.control_key_for(self.view.pool_of(method))
        # Not connected: cancels are replayed to consumers when they announce themselves.
        await self.link.send_control(Cancel(job_id=job_id), key)

    async def replay_cancels(self, entry: WorkerEntry) -> None:
        """A consumer that started later learns of cancels of jobs that may still be queued."""
        key = names.control_worker_key(entry.id)
        for job_id, method in await self.store.pending_cancels(now_ms() - CANCEL_REPLAY_MS):
            if method in entry.methods:
                await self._send_cancel(job_id, method, key)
        await self.link.send_control(Replayed(), key)

    # -- outcomes -----------------------------------------------------------------------------
    async def _consume(self, link: BrokerLink) -> None:
        assert link.connection is not None
        channel = await link.connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=REPLY_PREFETCH)
        shared = durable_queue_arguments(self.settings.queue_type)
        replies = await channel.declare_queue(names.REPLIES_QUEUE, durable=True, arguments=shared)
        dead = await channel.declare_queue(names.DEAD_EVENTS_QUEUE, durable=True, arguments=shared)
        await replies.consume(self._on_reply)
        await dead.consume(self._on_dead_letter)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        job_id = message.correlation_id or ""
        status, result, error = from_reply(message.body)
        facts = reply_facts(message.headers or {})
        await self._record(job_id, status, result, error, facts.worker,
                           at_ms=facts.finished_ms or now_ms(), attempt=facts.attempt,
                           started_ms=facts.started_ms)
        if status is JobStatus.CANCELLED:
            await self.store.cancel_seen(job_id)
        await message.ack()  # only once the outcome is stored

    async def _on_dead_letter(self, message: AbstractIncomingMessage) -> None:
        if message.reply_to == names.REPLIES_QUEUE and message.correlation_id:
            status, error = from_dead_letter(dict(message.headers or {}))
            await self._record(message.correlation_id, status, None, error, None)
        await message.ack()  # sync calls' dead letters concern no job

    async def _record(self, job_id: str, status: JobStatus, result: Any,
                      error: ErrorBody | None, worker: str | None, *, at_ms: int | None = None,
                      attempt: int | None = None, started_ms: int | None = None) -> None:
        changed = await self.store.finish(job_id, status, result, error, at_ms or now_ms(),
                                          worker, attempt, started_ms)
        if not changed:
            return  # a redelivered reply, or a job already final: nothing changes
        job = await self.store.get(job_id)
        self.metrics.jobs.labels(job.method if job else "?", status).inc()
        if self.dispatcher is not None:
            self.dispatcher.notify()
        self.hub.notify(job_id)
        await self._announce(JobEvent(job_id=job_id, kind="finished", at=now_ms(),
                                      status=status, worker=worker))

    async def _announce(self, event: JobEvent) -> None:
        if self.link.plain is None:
            return
        exchange = await self.link.plain.get_exchange(names.EVENTS_EXCHANGE, ensure=False)
        await exchange.publish(aio_pika.Message(codec.dumps(event)),
                               routing_key=names.job_event_key(event.job_id, event.kind),
                               mandatory=False)

    async def on_job_event(self, key: str, body: bytes) -> None:
        """job.{id}.started / .progress from workers; .finished from gateways."""
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
