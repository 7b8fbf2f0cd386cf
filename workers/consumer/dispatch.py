"""What a consumer does with one delivery (SPEC: worker semantics): decide, maybe run, settle.

`decide` (`workers.consumer.decision`, a pure function) looks at the delivery and what the
consumer knows and returns a `Run` or a `Settle`; running a handler turns a `Run` into a
`Settle` carrying its reply. `Settler.settle` (`workers.consumer.settling`) is the one place a
delivery leaves; `RunOnce` (`workers.consumer.runonce`) runs each request once here, whatever
happens to its channel.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import replace

from protocol import names
from protocol.clock import now_ms
from protocol.requests import read_attempt
from transport.confirms import ConfirmingChannel
from transport.tracing import Tracing
from workers.consumer.autoprefetch import AutoPrefetch
from workers.consumer.batching import Batcher
from workers.consumer.decision import Known, Run, cancelled, decide, expired, too_late
from workers.consumer.delivery import Delivery
from workers.consumer.outcome import Outcome, Stopper, run_batch, run_handler
from workers.consumer.runonce import RunOnce
from workers.consumer.settling import Settle, Settler
from workers.consumer.slot import take_slot
from workers.consumer.starts import JobEventSink, StartEvents
from workers.consumer.state import Cancels, ConsumerSetup, Counters
from workers.consumer.strays import StrayReplies
from workers.consumer.topology import PoolTopology
from workers.context import JobContext
from workers.handlers import Handler

log = logging.getLogger("rpcfleet.worker")


class Dispatcher:
    def __init__(
        self,
        setup: ConsumerSetup,
        confirming: ConfirmingChannel,
        topology: PoolTopology,
        executor: Executor,
        cancels: Cancels,
        counters: Counters,
        job_event: JobEventSink,
        on_exit_request: Callable[[], None],
        measure: AutoPrefetch,
        tracing: Tracing | None = None,
        strays: StrayReplies | None = None,
    ) -> None:
        self.setup = setup
        self.topology = topology
        self.executor = executor
        self.cancels = cancels
        self.counters = counters
        self.job_event = job_event
        self.on_exit_request = on_exit_request
        self.measure = measure
        self.tracing = tracing or Tracing()
        self.worker = setup.worker_id
        self.semaphore = asyncio.Semaphore(setup.settings.concurrency)
        self.handing_back = asyncio.Event()  # leaving: deliveries not started go back
        self.batchers: dict[str, Batcher[Settle]] = {}  # per batched method, its batch
        self.capacity: Callable[[], int] = lambda: 1  # the prefetch in force (set by the runtime)
        self.progress_sent: dict[str, int] = {}  # job id -> progress events its run sent
        self.settler = Settler(setup, confirming, topology, counters, measure,
                               strays or StrayReplies(setup.settings.amqp_url,
                                                      setup.settings.heartbeat))
        self.starts = StartEvents(job_event)
        self.run_once = RunOnce(self.settler)

    async def handle(self, message: Delivery) -> None:
        handler = self.setup.pool.handlers.get(message.type or "")
        if handler is not None and handler.batch:
            await self._handle_batched(message, handler)
            return
        if not await self._take_slot():
            await self._hand_back(message)
            return
        try:
            await self._handle(message)
        finally:
            self.semaphore.release()

    async def _hand_back(self, message: Delivery) -> None:
        """This process is leaving after abandoning a handler: give back what it has not
        started, as the attempt it is (a broker requeue would count one more)."""
        attempt = read_attempt(message.headers) + (1 if message.redelivered else 0)
        await self.settler.settle(message, Settle(attempt, retry=True))

    def _starting(self, message: Delivery, handler: Handler, attempt: int,
                  track: bool = True) -> None:
        """A handler starts for this request: a job says so, and (`track`) a hard time limit is
        handed to the supervisor's backstop."""
        job_id = str(message.correlation_id)
        if names.is_durable_reply_to(message.reply_to):
            self.starts.starting(job_id, attempt)
        if track and handler.time_limit is not None:
            grace_ms = int((handler.time_limit + self.setup.settings.kill_grace) * 1000)
            if not self.setup.slots.track(self.setup.slot, job_id, grace_ms, "time_limit"):
                # The table is sized for what may run at once (workers.slots.running_for);
                # new code with a larger batch (a reload) can outgrow it until a restart.
                log.warning("%s runs without the supervisor's backstop: this consumer tracks "
                            "%s running requests at most (restart the pool after raising a "
                            "batch size)", job_id, self.setup.slots.running_per_slot)

    async def _take_slot(self) -> bool:
        """One of the `concurrency` handler slots; False once `handing_back` is set."""
        return await take_slot(self.semaphore, self.handing_back)

    async def _handle(self, message: Delivery) -> None:
        if await self.run_once.answered(message):
            return
        decision = self.decide(message)
        if isinstance(decision, Run):
            decision = await self.run_once.run(message, self._run(message, decision))
        await self._conclude(message, decision)

    async def _handle_batched(self, message: Delivery, handler: Handler) -> None:
        """A request of a batched method: it waits in its method's batch without a handler
        slot (the batch call takes one), and is settled on its own like any other, under the
        same run-once rule (a redelivery joins the batch that runs it)."""
        if self.handing_back.is_set():
            await self._hand_back(message)
            return
        if await self.run_once.answered(message):
            return
        decision = self.decide(message)
        if isinstance(decision, Run):
            decision = await self.run_once.run(message, self._in_batch(handler, message, decision))
        await self._conclude(message, decision)

    async def _in_batch(self, handler: Handler, message: Delivery, run: Run) -> Settle:
        batcher = self.batchers.get(handler.name)
        if batcher is None:
            batcher = Batcher(handler, self.capacity, self._call_batch,
                              busy=self.semaphore.locked)
            self.batchers[handler.name] = batcher
        return await batcher.submit((message, run))

    async def _call_batch(self, handler: Handler, items: list[tuple[Delivery, Run]]
                          ) -> list[Settle]:
        """One handler call for a batch of (delivery, run), once a handler slot is free, and
        how each request leaves: one cancelled before then is left out and answered
        `cancelled`, one whose deadline passed meanwhile (a batch gathers while every slot is
        busy) is left out and expires; with no slot (leaving) each goes back as the attempt it
        is."""
        if not await self._take_slot():  # leaving (SIGTERM, an abandoned handler): not here
            return [Settle(run.attempt, retry=True) for _, run in items]
        settles: dict[int, Settle] = {}
        live: list[int] = []
        slots, slot = self.setup.slots, self.setup.slot
        try:
            now = now_ms()
            for index, (message, run) in enumerate(items):
                if message.correlation_id in self.cancels:
                    settles[index] = cancelled(run.attempt)
                elif too_late(run.deadline, run.attempt, message.reply_to, now):
                    settles[index] = expired(run.attempt, message.reply_to, "for its batch",
                                             "while its batch gathered")
                else:
                    # The batch's one time limit is tracked under each of its requests: if the
                    # backstop kills the process, every one of them is answered, none runs again.
                    self._starting(message, handler, run.attempt)
                    live.append(index)
            if not live:
                return [settles[index] for index in range(len(items))]
            started = time.perf_counter()
            try:
                results = await run_batch(
                    handler, handler.arguments([items[i][1].params for i in live],
                                               self.setup.cache, None),
                    len(live), Stopper(), self.executor, self.setup.settings.max_result_bytes)
                if any(result.must_exit for result in results):
                    self.handing_back.set()  # before its slot frees: nothing new starts here
            finally:
                for index in live:
                    self.starts.ended(str(items[index][0].correlation_id))
        finally:
            self.semaphore.release()
        # prefetch=auto sizes itself by the time per request, which batching divides.
        self.measure.observe_handler((time.perf_counter() - started) / len(live))
        if not any(result.must_exit for result in results):
            for index in live:
                slots.untrack(slot, str(items[index][0].correlation_id))
        for index, result in zip(live, results, strict=True):
            log_raised(handler.name, str(items[index][0].correlation_id), result)
            settles[index] = Settle(items[index][1].attempt, reply=result)
        return [settles[index] for index in range(len(items))]

    async def _conclude(self, message: Delivery, decision: Settle) -> None:
        await self.settler.settle(message, decision)
        if decision.reply is not None and decision.reply.must_exit:
            # Before the handler's slot frees (the caller releases it after this returns): a
            # delivery waiting for it must not start in a process that is leaving.
            self.handing_back.set()
            log.warning("job %s ended with %s while its handler may still run: replacing "
                        "this process", message.correlation_id, decision.reply.code)
            # The supervisor's backstop waits for the others this process holds to finish
            # (the drain), then kills it if the abandoned handler keeps it alive.
            settings = self.setup.settings
            grace_ms = int((settings.drain_timeout + settings.kill_grace) * 1000)
            self.setup.slots.track(self.setup.slot, str(message.correlation_id), grace_ms,
                                   str(decision.reply.code))
            self.on_exit_request()

    # -- the decision -------------------------------------------------------------------------
    def decide(self, message: Delivery) -> Run | Settle:
        """`workers.consumer.decision.decide`, with what this consumer knows now."""
        return decide(message, Known(
            self.setup.pool.name, self.setup.pool.handlers, self.setup.settings.max_attempts,
            self.setup.slots.tombstone, self.cancels, now_ms()))

    # -- running ------------------------------------------------------------------------------
    async def _run(self, message: Delivery, run: Run) -> Settle:
        job_id, handler = str(message.correlation_id), run.handler
        if job_id in self.cancels:  # heard between the decision and now (the run is a task)
            return cancelled(run.attempt)
        self._starting(message, handler, run.attempt)
        stopper = Stopper()
        self.cancels.running[job_id] = stopper
        self.progress_sent[job_id] = 0
        slots, slot = self.setup.slots, self.setup.slot
        started = time.perf_counter()
        try:
            with self.tracing.running(handler.name, job_id, message.headers,
                                      now_ms()) as trace:
                context = None
                if "job" in handler.wants:
                    context = JobContext(id=job_id, method=handler.name, attempt=run.attempt,
                                         deadline=run.deadline, worker=self.worker,
                                         _progress=self._progress_sink(run.attempt),
                                         trace=trace or {})
                outcome = await run_handler(
                    handler, handler.arguments(run.params, self.setup.cache, context), stopper,
                    self.executor, self.setup.settings.max_result_bytes)
        finally:
            self.cancels.running.pop(job_id, None)
            self.starts.ended(job_id)
            # Every progress event sent is counted by now (_progress_sink): the reply says so.
            sent = self.progress_sent.pop(job_id, 0)
        outcome = replace(outcome, progress_events=sent) if sent else outcome
        self.measure.observe_handler(time.perf_counter() - started)
        log_raised(handler.name, job_id, outcome)
        if not outcome.must_exit:
            slots.untrack(slot, job_id)
        return Settle(run.attempt, reply=outcome)

    def _progress_sink(self, attempt: int) -> Callable[[str, float, str], None]:
        loop, loop_thread = asyncio.get_running_loop(), threading.get_ident()

        def progress(job_id: str, fraction: float, note: str) -> None:
            if job_id not in self.progress_sent:
                return  # an abandoned handler (past its time limit) that still reports
            self.starts.send_now(job_id)  # a gateway records progress of a running job only
            n = self.progress_sent[job_id] = self.progress_sent[job_id] + 1
            # Numbered: each gateway process hears it, the store records it once, in order.
            self.job_event(job_id, "progress", {"fraction": fraction, "note": note, "n": n,
                                                "attempt": attempt})

        def sink(job_id: str, fraction: float, note: str) -> None:
            if threading.get_ident() == loop_thread:  # an async handler: now, before its end
                progress(job_id, fraction, note)
            else:  # a handler thread: on the loop, which runs it before the thread's end
                loop.call_soon_threadsafe(progress, job_id, fraction, note)

        return sink


def log_raised(method: str, call_id: str, outcome: Outcome) -> None:
    """A handler's exception, as its caller got it (`worker_error`), with its traceback (SPEC
    1.2): the one trace of the failure on the worker's side. A CallError is an answer, not
    logged."""
    if outcome.raised is not None:
        log.error("%s %s failed: %s: %s", method, call_id, type(outcome.raised).__name__,
                  outcome.raised, exc_info=outcome.raised)
