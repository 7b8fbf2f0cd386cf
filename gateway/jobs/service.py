"""The jobs service of one gateway process: submit, follow, cancel.

Outcomes (replies, dead letters, workers' events) are recorded by its `OutcomeRecorder`
(`gateway.jobs.recorder`); callbacks leave from the store's outbox (`gateway.webhooks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncGenerator, Coroutine
from dataclasses import replace
from typing import Any

from pydantic import ValidationError
from tenacity import AsyncRetrying, stop_after_delay

from gateway.amqp.link import BrokerLink
from gateway.amqp.rpc import publish_request, request_properties
from gateway.auth import Caller
from gateway.errors import (
    BadRequest,
    Conflict,
    GatewayError,
    NotFound,
    Overloaded,
    PublishedUnrecorded,
    PublishUnknown,
)
from gateway.fleet.view import FleetView
from gateway.ids import could_be_job_id, time_ordered_id
from gateway.jobs.cancels import Cancels
from gateway.jobs.following import Followers
from gateway.jobs.hub import JobHub
from gateway.jobs.recorder import OutcomeRecorder
from gateway.metrics import Metrics
from gateway.params import check_method_name, json_object
from gateway.settings import GatewaySettings
from gateway.store import IdempotencyConflict, JobStore, NewJob, PublishClaim
from gateway.store.rows import JobEventRecord
from gateway.webhooks import CallbackDispatcher, CallbackUrlRefused, Signer, UrlGuard
from protocol import (
    Job,
    JobStatus,
    JobSubmission,
    Request,
    WorkerEntry,
    backoff,
    codec,
    names,
    now_ms,
)
from protocol.jobs import job_body_problem
from protocol.queues import job_message_priority
from transport.background import Background
from transport.tracing import Tracing

log = logging.getLogger("rpcfleet.jobs")

ANYONE = Caller(owner=None, admin=True)  # the service's own reads, and gateways without keys

# A job whose publish was never confirmed is settled this long after its submitter's lease: long
# enough for a client's retries under its Idempotency-Key (which publish it), short enough that
# nobody waits on a job that will never run.
ABANDON_AFTER_MS = 5 * 60 * 1000
# The longest a submitter marks a confirmed job in the background (its store failing), and how
# long past a lease another gateway waits before taking a publish over: the marking, the first
# mark's own bound before it (a PostgreSQL call: 32 s and psycopg's cancel) and the last
# attempt's after it.
MARKING_MS = ABANDON_AFTER_MS // 2
CLAIM_GRACE_MS = MARKING_MS + 90_000


def body_hash(method: str, raw: bytes) -> str:
    """What one Idempotency-Key is bound to: the method and the exact body."""
    return hashlib.sha256(method.encode() + b"\0" + raw).hexdigest()


class JobService:
    def __init__(self, settings: GatewaySettings, link: BrokerLink, view: FleetView,
                 metrics: Metrics, store: JobStore, dispatcher: CallbackDispatcher | None,
                 signer: Signer | None, guard: UrlGuard,
                 tracing: Tracing | None = None) -> None:
        self.settings = settings
        self.tracing = tracing or Tracing()
        self.link = link
        self.view = view
        self.metrics = metrics
        self.store = store
        self.dispatcher = dispatcher
        self.signer = signer
        self.guard = guard
        self.hub = JobHub()
        self.outcomes = OutcomeRecorder(link, store, self.hub, metrics, dispatcher, view,
                                        settings.queues)
        self._background = Background()
        # Jobs the broker confirmed whose "published" mark the store refused: marked again in
        # the background; a retry under their key meanwhile must not publish them again.
        self._unmarked: set[str] = set()
        self.cancels = Cancels(link, view, store, self._background)
        self.followers = Followers(store, self.hub)

    # -- submit -------------------------------------------------------------------------------
    async def submit(self, method: str, raw: bytes, idempotency_key: str | None,
                     trace: dict[str, str] | None = None,
                     caller: Caller = ANYONE) -> tuple[Job, bool]:
        check_method_name(method)
        data = json_object(raw, '{"params": {...}, ...}')
        try:
            submission = JobSubmission.model_validate(data)
        except ValidationError as exc:
            raise BadRequest(job_body_problem(exc)) from None
        if submission.callback_url is not None:
            if self.signer is None:
                raise BadRequest("callback_url needs RPCFLEET_CALLBACK_SECRET on the gateway")
            try:
                await self.guard.check(submission.callback_url)
            except CallbackUrlRefused as exc:
                raise BadRequest(str(exc)) from None
        try:  # before anything is stored: params the request cannot carry are the caller's
            params = codec.dumps(submission.params)
        except TypeError as exc:  # JSON nested deeper than the encoder goes (~254 levels)
            raise BadRequest(f"params cannot be sent on: {exc}") from None
        timeout = submission.timeout or self.settings.job_timeout_default
        created = now_ms()
        job = NewJob(
            id=time_ordered_id(created), method=method, created_ms=created,
            priority=submission.priority,
            deadline_ms=created + int(timeout * 1000) if timeout else None,
            callback_url=submission.callback_url,
            # Scoped per key: another caller's identical Idempotency-Key is another job.
            idempotency_key=(f"{caller.owner}:{idempotency_key}"
                             if idempotency_key and caller.owner else idempotency_key),
            body_hash=body_hash(method, raw) if idempotency_key else None,
            publish_lease_ms=created + self._publish_lease_ms, owner=caller.owner)
        try:
            stored, is_new = await self.store.create(job)
        except IdempotencyConflict as exc:
            raise BadRequest(str(exc)) from None
        if is_new:
            try:
                await self._publish(job, params, trace)
            except (PublishUnknown, PublishedUnrecorded, asyncio.CancelledError):
                # The broker may hold it: keep the job. If it is delivered it runs and is
                # recorded; a retry under the same Idempotency-Key returns this job; if it stays
                # unconfirmed, the housekeeping fails and cancels it (`abandon_unpublished`).
                raise
            except BaseException as exc:
                await self.store.delete(job.id)  # definitely refused: the job never existed
                if isinstance(exc, GatewayError):
                    exc.call_id = None  # a 503 without an id: nothing was enqueued
                raise
            return stored, True
        if stored.id in self._unmarked:
            claim: PublishClaim = "held"
        else:
            # Past its submitter's lease and the time that submitter may still spend marking a
            # job the broker confirmed (its store writes failing: a host cut from a shared
            # database): publishing it again then would run it twice.
            claim = await self.store.claim_publish(stored.id, created, self._publish_lease_ms,
                                                   grace_ms=CLAIM_GRACE_MS)
        if claim == "held":
            raise Overloaded("the same submission is being published by another request",
                             call_id=stored.id)
        if claim == "claimed":
            # The same key and body again, for a job whose request the broker never confirmed:
            # its submitter stopped or failed mid-way, so no caller was told 202. Publish it now,
            # under the original id.
            try:
                await self._publish(replace(job, id=stored.id), params, trace)
            except (PublishUnknown, PublishedUnrecorded, asyncio.CancelledError):
                raise  # the broker may hold it (or has it): the lease stays, no third publish
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
        if not self.outcomes.ready.is_set():
            try:  # the first moments after start: the queues are being declared
                await asyncio.wait_for(self.outcomes.ready.wait(), self.settings.publish_timeout)
            except TimeoutError:
                raise Overloaded("the gateway's reply queue is not ready yet") from None
        with self.tracing.publishing(f"POST /v1/jobs/{job.method}", job.method, trace,
                                     now_ms()) as headers:
            properties = request_properties(Request(
                job.id, job.method, self.outcomes.replies_queue, job.deadline_ms, persistent=True,
                trace=headers, priority=job_message_priority(
                    job.priority, self.settings.queues, self.view.queue_max_priority(job.method))))
            await publish_request(self.link, self.metrics, job.method, params, properties,
                                  job.id, self.settings.publish_timeout)
        try:
            await self.store.mark_published(job.id)
        except Exception as exc:  # the broker has it: the job exists, whatever the store says
            log.warning("job %s was published but the store could not mark it (%r); marking "
                        "it again in the background", job.id, exc)
            self._start(self._mark_until_taken(job.id))
            raise PublishedUnrecorded(f"the job was queued but the job store cannot take "
                                      f"writes right now ({type(exc).__name__})",
                                      call_id=job.id) from None

    async def _mark_until_taken(self, job_id: str) -> None:
        """Mark a confirmed job published once the store takes writes again: until then a
        retry under its Idempotency-Key past the submitter's lease would publish it a second
        time, and the housekeeping would settle it as never published."""
        self._unmarked.add(job_id)
        try:
            async for attempt in AsyncRetrying(
                    wait=backoff.wait(0.1, 1.0),
                    stop=stop_after_delay(MARKING_MS / 1000), reraise=True):
                with attempt:
                    await self.store.mark_published(job_id)
        except Exception as exc:
            log.error("job %s stays marked unpublished (%r): the housekeeping settles it as "
                      "never published and cancels it", job_id, exc)
        finally:
            self._unmarked.discard(job_id)

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        """A background task of the service, stopped by `close`."""
        self._background.start(work)

    async def close(self) -> None:
        await self._background.stop()

    async def abandon_unpublished(self) -> int:
        """Fail queued jobs whose requests the broker never confirmed and nobody resubmitted
        (their submitter stopped mid-way, or the confirm never came), and cancel them: if the
        broker did take the request after all, its consumer skips it (cancels are replayed to
        consumers that start later), so the job's record stays true."""
        now = now_ms()
        abandoned = await self.store.abandon_unpublished(now - ABANDON_AFTER_MS, now)
        for job_id, method in abandoned:
            with contextlib.suppress(Exception):  # replayed to consumers that start later
                await self.cancels.send(job_id, method)
        return len(abandoned)

    # -- follow -------------------------------------------------------------------------------
    async def get(self, job_id: str, caller: Caller = ANYONE) -> Job:
        """The job, for whoever may see it; to anyone else it does not exist (404, the same
        answer as for an unknown id: its existence is not revealed)."""
        job = await self.store.get(job_id) if could_be_job_id(job_id) else None
        if job is None or (caller.restricted
                           and await self.store.owner(job_id) != caller.owner):
            raise NotFound(f"no job {job_id!r}")
        return job

    async def recent(self, caller: Caller, limit: int, status: JobStatus | None = None,
                     method: str | None = None) -> list[Job]:
        """The newest jobs the caller may see (a caller key: its own; an admin: all)."""
        if method is not None and not names.valid_method_name(method):
            raise BadRequest(f"method={method[:64]!r} is not a method name")
        return await self.store.recent(limit, status, method,
                                       caller.owner if caller.restricted else None)

    def follow(self, job_id: str, after: int = 0) -> AsyncGenerator[JobEventRecord, None]:
        """The job's events after `after`, then the live ones (gateway.jobs.following)."""
        return self.followers.follow(job_id, after)

    async def ended_by(self, job: Job, after: int) -> bool:
        """Whether the job ended at or before event `after` (gateway.jobs.following)."""
        return await self.followers.ended_by(job, after)

    async def wait_terminal(self, job_id: str, seconds: float) -> Job:
        """The job once it ended, or as it is after `seconds` (`?wait=`)."""
        return await self.followers.wait_terminal(job_id, seconds, self.get)

    # -- cancel -------------------------------------------------------------------------------
    async def cancel(self, job_id: str, caller: Caller = ANYONE) -> Job:
        job = await self.get(job_id, caller)
        if job.status is JobStatus.QUEUED:
            taken = await self.store.cancel_queued(job_id, now_ms())
        elif job.status is JobStatus.RUNNING:  # stopped by its consumer; kept until an outcome
            taken = await self.store.request_cancel(job_id)
        else:
            taken = False
        if not taken:  # ended already, or between the read and the write (SPEC: 409)
            ended = await self.get(job_id)
            raise Conflict(f"job {job_id} already ended: {ended.status}")
        try:
            await self.cancels.send(job_id, job.method)
        except Exception as exc:  # stored: replayed once the broker is back
            log.warning("cancel of %s not sent now (%r); it is replayed when the broker is "
                        "back", job_id, exc)
        job = await self.get(job_id)
        self.hub.notify(job_id)
        return job

    async def on_new_consumer(self, entry: WorkerEntry) -> None:
        """A consumer announced itself: its pool's dead letters are watched, and it hears the
        cancels of jobs that may still be queued."""
        await self.outcomes.watch_pool(entry.pool)
        await self.cancels.to_consumer(entry)
