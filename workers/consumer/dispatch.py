"""What a consumer does with one delivery (SPEC: worker semantics), in order:

malformed → dead-letter · redelivered → republish with attempt + 1 (or dead-letter past the
maximum) · killed before → answer, not run again · cancelled → answer · past its deadline →
dead-letter `expired` · invalid params → answer · run → reply → ack.
A message is acked only after the broker has taken whatever replaces it (reply, copy, retry):
confirmed on the confirming channel, or, for a sync reply, written ahead of the ack on the
request's own channel (see `workers.consumer.wire`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from aio_pika.abc import AbstractChannel
from pamqp.commands import Basic as _Basic

from protocol import DeadReason, ErrorCode, codec, names
from protocol.clock import now_ms
from protocol.requests import read_attempt, read_deadline, read_trace
from workers.consumer import outgoing, wire
from workers.consumer.autoprefetch import AutoPrefetch
from workers.consumer.delivery import Delivery
from workers.consumer.outcome import Outcome, Stopper, failure, run_handler
from workers.consumer.state import Cancels, ConsumerSetup, Counters
from workers.consumer.topology import PoolTopology
from workers.context import JobContext
from workers.handlers import InvalidParams

log = logging.getLogger("rpcfleet.worker")


class ReplyNotConfirmed(RuntimeError):
    """The broker did not ack a reply: the request stays unacked, to be redelivered."""

JobEventSink = Callable[[str, str, dict[str, Any]], None]


class Dispatcher:
    def __init__(
        self,
        setup: ConsumerSetup,
        channel: AbstractChannel,
        topology: PoolTopology,
        executor: Executor,
        cancels: Cancels,
        counters: Counters,
        job_event: JobEventSink,
        on_exit_request: Callable[[], None],
        measure: AutoPrefetch,
    ) -> None:
        self.setup = setup
        self.channel = channel
        self.topology = topology
        self.executor = executor
        self.cancels = cancels
        self.counters = counters
        self.job_event = job_event
        self.on_exit_request = on_exit_request
        self.measure = measure
        self.worker = setup.worker_id
        self.semaphore = asyncio.Semaphore(setup.settings.concurrency)

    async def handle(self, message: Delivery) -> None:
        async with self.semaphore:
            await self._handle(message)

    async def _handle(self, message: Delivery) -> None:
        job_id = message.correlation_id
        if not job_id:
            await self._dead_letter(message, DeadReason.MALFORMED, "no correlation_id")
            return
        handler = self.setup.pool.handlers.get(message.type or "")
        if handler is None:
            if message.reply_to:
                await self._reply_and_ack(message, failure(
                    ErrorCode.UNKNOWN_METHOD,
                    f"pool {self.setup.pool.name} does not serve {message.type!r}"), 1)
            else:
                await self._dead_letter(message, DeadReason.MALFORMED,
                                        f"unknown method {message.type!r} and no reply_to")
            return
        try:
            raw = codec.loads(message.body)
        except ValueError:
            await self._dead_letter(message, DeadReason.MALFORMED, "body is not JSON")
            return

        attempt = read_attempt(message.headers)
        if message.redelivered:
            attempt += 1
            if attempt <= self.setup.settings.max_attempts and not self._buried(job_id):
                retry = outgoing.retry_message(message, attempt)
                await self.channel.default_exchange.publish(
                    retry, routing_key=names.pool_queue(self.setup.pool.name))
                await message.ack()
                return
        if attempt > self.setup.settings.max_attempts:
            await self._dead_letter(message, DeadReason.MAX_ATTEMPTS,
                                    f"attempt {attempt} > {self.setup.settings.max_attempts}")
            await self._reply_and_ack(message, failure(
                ErrorCode.MAX_ATTEMPTS,
                f"gave up after {attempt - 1} attempts (RPCFLEET_MAX_ATTEMPTS)"), attempt)
            return
        if attempt > 1 and (reason := self._buried(job_id)):
            await self._reply_and_ack(message, _killed(reason, handler.time_limit), attempt)
            return
        if job_id in self.cancels:
            await self._reply_and_ack(message, failure(
                ErrorCode.CANCELLED, "the job was cancelled before it started"), attempt)
            return
        deadline = read_deadline(message.headers)
        if deadline is not None and deadline <= now_ms():
            await self._dead_letter(message, DeadReason.EXPIRED, "deadline passed while queued",
                                    ack=False)
            if names.is_durable_reply_to(message.reply_to):
                await self._reply(message, failure(
                    ErrorCode.EXPIRED, "the job waited in the queue past its deadline"), attempt)
            await message.ack()
            return
        try:
            params = handler.parse_params(raw)
        except InvalidParams as exc:
            await self._reply_and_ack(message, failure(ErrorCode.INVALID_PARAMS, str(exc)),
                                      attempt)
            return
        await self._run(message, handler, params, attempt, deadline)

    async def _run(self, message: Delivery, handler: Any, params: Any,
                   attempt: int, deadline: int | None) -> None:
        job_id = str(message.correlation_id)
        is_job = names.is_durable_reply_to(message.reply_to)
        if is_job:
            self.job_event(job_id, "started", {"attempt": attempt})
        context = None
        if "job" in handler.wants:
            context = JobContext(id=job_id, method=handler.name, attempt=attempt,
                                 deadline=deadline, worker=self.worker,
                                 _progress=self._progress_sink(),
                                 trace=read_trace(message.headers))
        stopper = Stopper()
        self.cancels.running[job_id] = stopper
        slots, slot = self.setup.slots, self.setup.slot
        if handler.time_limit is not None:
            grace_ms = int((handler.time_limit + self.setup.settings.kill_grace) * 1000)
            slots.track(slot, job_id, now_ms() + grace_ms, "time_limit")
        started = time.perf_counter()
        try:
            outcome = await run_handler(
                handler, handler.arguments(params, self.setup.cache, context), stopper,
                self.executor, self.setup.settings.max_result_bytes)
        finally:
            self.cancels.running.pop(job_id, None)
        self.measure.observe_handler(time.perf_counter() - started)
        await self._reply_and_ack(message, outcome, attempt)
        if outcome.must_exit:
            log.warning("job %s ended with %s while its handler may still run: replacing this "
                        "process", job_id, outcome.code)
            self.on_exit_request()
        else:
            slots.untrack(slot, job_id)

    def _progress_sink(self) -> Callable[[str, float, str], None]:
        loop = asyncio.get_running_loop()

        def sink(job_id: str, fraction: float, note: str) -> None:
            loop.call_soon_threadsafe(
                self.job_event, job_id, "progress", {"fraction": fraction, "note": note})

        return sink

    def _buried(self, job_id: str) -> str | None:
        return self.setup.slots.tombstone(job_id)

    async def _reply(self, message: Delivery, outcome: Outcome, attempt: int) -> None:
        """Publish a job's reply and wait for the broker's confirm: it is the job's only record
        (persistent, to a durable queue), so the request is acked only after it."""
        self._count(outcome)
        if not message.reply_to:
            return
        properties = outgoing.reply_properties(message, self.worker, attempt)
        sent = time.perf_counter()
        channel = await self.channel.get_underlay_channel()
        confirm = await channel.basic_publish(outcome.body, routing_key=message.reply_to,
                                              properties=properties, mandatory=False)
        if not isinstance(confirm, _Basic.Ack):
            raise ReplyNotConfirmed(f"reply to {message.correlation_id} got {confirm!r}")
        self.measure.observe_round_trip(time.perf_counter() - sent)

    async def _reply_and_ack(self, message: Delivery, outcome: Outcome,
                             attempt: int) -> None:
        if message.reply_to and not names.is_durable_reply_to(message.reply_to):
            # A sync reply: transient, to direct reply-to, in one write with the ack after it.
            self._count(outcome)
            await wire.reply_then_ack(
                message.channel, body=outcome.body, reply_to=message.reply_to,
                properties=outgoing.reply_properties(message, self.worker, attempt),
                delivery_tag=message.delivery_tag)
            return
        await self._reply(message, outcome, attempt)
        await message.ack()

    def _count(self, outcome: Outcome) -> None:
        self.counters.processed += 1
        if not outcome.ok:
            self.counters.failed += 1

    async def _dead_letter(self, message: Delivery, reason: DeadReason,
                           detail: str, ack: bool = True) -> None:
        log.warning("dead-lettering %s (%s): %s", message.correlation_id, reason, detail)
        copy = outgoing.dead_letter_message(message, self.setup.pool.name, reason, detail)
        await self.topology.dead_letters.publish(copy, routing_key=self.setup.pool.name)
        if ack:
            await message.ack()


def _killed(reason: str, time_limit: float | None) -> Outcome:
    if reason == "cancelled":
        return failure(ErrorCode.CANCELLED, "the job was cancelled while running")
    return failure(ErrorCode.TIME_LIMIT,
                   f"the handler ran past its time limit of {time_limit} s and was killed")
