"""The consumer process: connection, topology, subscription, control, beats, drain.

Lifecycle: connect (robust) → declare → subscribe under the slot's prefetch → serve until SIGTERM
/ SIGINT (drain: stop taking messages, finish in-flight work within the drain timeout, close) or
until a handler had to be abandoned (time limit, cancel), after which the process exits to be
replaced by its supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from protocol import Cancel, SetPrefetch, SetProcesses, WorkerEntry, names
from protocol.fleet import Command, RetirePool
from transport.background import Background
from transport.cluster import ClusterConnection, connect_cluster
from transport.confirms import ConfirmingChannel, NackJudge
from transport.settling import Decision, settle
from transport.tracing import Tracing
from workers.consumer.autoprefetch import AutoPrefetch
from workers.consumer.beats import worker_entry
from workers.consumer.control import ControlQueue
from workers.consumer.copywatch import CopyWatch
from workers.consumer.delivery import Delivery, InFlight
from workers.consumer.dispatch import Dispatcher
from workers.consumer.elastic import ElasticReport
from workers.consumer.prefetching import Prefetching
from workers.consumer.recycle import EXIT_RECYCLE, Recycling
from workers.consumer.reporting import Reporter
from workers.consumer.settling import CONFIRM_TIMEOUT_S
from workers.consumer.state import Cancels, ConsumerSetup, Counters
from workers.consumer.strays import StrayReplies
from workers.consumer.subscription import Subscription
from workers.consumer.topology import PoolTopology, QueueArguments, declare_pool
from workers.memory import private_bytes

log = logging.getLogger("rpcfleet.worker")

EXIT_DRAINED = 0
EXIT_REPLACE = 75  # abandoned a handler (time limit, cancel): the supervisor forks a fresh one
EXIT_RETIRED = 77  # its pool was retired (SPEC 1.2): the supervisor stops the pool, exit 0
CANCEL_TIMEOUT_S = 5.0  # a healthy broker confirms a basic.cancel in milliseconds
REQUEUE_PAUSE_S = 1.0  # before handing back a delivery whose settlement the broker refused


class Consumer:
    def __init__(self, setup: ConsumerSetup) -> None:
        self.setup = setup
        self.settings = setup.settings
        self.in_flight = InFlight()
        self.cancels = Cancels()
        self.counters = Counters()
        self.measure = AutoPrefetch(self.settings.concurrency)
        self._stop = asyncio.Event()
        self.control = ControlQueue(setup, self._on_command)
        self._exit_code = EXIT_DRAINED
        self._retire_drained = False  # retired once its queue was served: finish what it holds
        self._tasks = Background()
        # Job replies, dead-letter and retry copies: confirmed (transport.confirms).
        self.confirming = ConfirmingChannel(NackJudge(quorum=self.settings.queues == "quorum"),
                                            retire_after=CONFIRM_TIMEOUT_S)
        self._handled = 0
        self.tracing = Tracing()
        self._session = 0
        self.elastic = ElasticReport(setup.slots, setup.slot, names.pool_queue(setup.pool.name),
                                     self.settings.max_processes)
        self.copy_watch = CopyWatch(self.setup.worker_id, self.setup.cache_info.bytes,
                                    shared=self.settings.preload)
        self._copied: int | None = None
        self.topology: PoolTopology | None = None  # once declared (_serve)
        # Replies to callers a node may have taken with it.
        self.strays = StrayReplies(self.settings.amqp_url, self.settings.heartbeat)
        max_private = self.settings.max_private_mb
        self.recycling = Recycling(self.settings.max_messages,
                                   max_private * 1048576 if max_private else None)
        self.reports = Reporter(setup, self._entry, self._spawn, self.measure)
        self.prefetch = Prefetching(setup, self.measure, spawn=self._spawn, beat=self._beat,
                                    round_trip=self.reports.measure_round_trip)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        # After the fork: an exporter's thread does not survive one.
        self.tracing.configure(f"rpcfleet-worker {self.setup.pool.name}",
                               self.settings.otel_exporter)
        connection = await connect_cluster(
            self.settings.amqp_url, heartbeat=self.settings.heartbeat,
            client_properties={"connection_name": f"rpcfleet-worker {self.setup.worker_id}"})
        if isinstance(connection, ClusterConnection):
            self.strays.follow(lambda: connection.node)
        # One thread more than the handlers that may run at once (the dispatcher's semaphore):
        # a handler abandoned past its time limit or cancel keeps its thread, and the handlers
        # this process still runs before it leaves must not queue behind it.
        executor = ThreadPoolExecutor(self.settings.concurrency + 1, thread_name_prefix="handler")
        try:
            await self._serve(connection, executor)
        finally:
            await self._tasks.stop()
            await self.confirming.close()
            with contextlib.suppress(Exception):
                await connection.close()
            await self.strays.close()
            executor.shutdown(wait=False, cancel_futures=True)
            self.tracing.shutdown()
        return self._exit_code

    async def _serve(self, connection: AbstractRobustConnection,
                     executor: ThreadPoolExecutor) -> None:
        # Four channels (and the control queue's): `confirmed`, what is confirmed before a request
        # is acked (job replies, dead-letter and retry copies), replaced when a quorum queue
        # stalls it (transport.confirms); `setup`, the pool's topology, claims and round-trip
        # probe, never replaced (aio-pika restores them); `work`, the subscription, its acks and
        # the sync replies ahead of them (Dispatcher._reply); events and beats, fire-and-forget.
        self.confirming.attach(connection, await connection.channel(publisher_confirms=True))
        self._setup_channel = await connection.channel(publisher_confirms=True)
        work = await connection.channel(publisher_confirms=False)
        self._events_channel = await connection.channel(publisher_confirms=False)
        self.topology = topology = await self._declare()
        for held in topology.claims:  # the claim lives while a consumer of this pool does
            await held.consume(_hold, no_ack=True)
        await self.reports.attach(self._events_channel, topology.events)
        self.dispatcher = Dispatcher(
            self.setup, self.confirming, topology, executor, self.cancels, self.counters,
            self.reports.job_event, self._request_replacement, self.measure, self.tracing,
            self.strays)
        self.subscription = Subscription(
            work, topology.queue, self._on_message, self.in_flight,
            redeclare=self._declare,
            on_change=lambda: self._spawn(self._beat()),
            before_restore=self._new_session)
        self.dispatcher.capacity = lambda: self.subscription.prefetch or self.prefetch.value
        self.dispatcher.settler.before_last_ack = self._stop_taking
        await self.control.start(connection)
        await self.control.learn_cancels(self._beat)
        await self.subscription.start(self.prefetch.value)
        self.prefetch.started(self.subscription)
        await self._beat()  # serving now: say so at once
        self.setup.slots.set_serving(self.setup.slot, os.getpid())
        self._spawn(self._beat_loop())
        self._spawn(self.elastic.watch_backlog(lambda: self._events_channel))
        log.info("consumer %s (pid %s) serving %s at prefetch %s", self.setup.worker_id,
                 os.getpid(), ", ".join(self.setup.pool.methods), self.prefetch.value)
        await self._stop.wait()
        await self._drain()

    async def _new_session(self) -> None:
        """Before consuming again after a lost channel or connection: cancels sent while we
        were away (our control queue too may have gone) are replayed to the new session,
        announced once our control queue is back to hear them."""
        await self.control.back()
        self._session += 1
        self.strays.new_session()
        await self.control.learn_cancels(self._beat)

    async def _declare(self) -> PoolTopology:
        """The pool's queues, exchanges and method claims, on the setup channel (at the start,
        and again before a subscription is restored: the queue may have been deleted)."""
        settings = self.settings
        arguments = QueueArguments(settings.queues, settings.delivery_limit,
                                   settings.dead_letter_strategy, settings.job_priority_levels)
        return await declare_pool(self._setup_channel, self.setup.pool.name,
                                  self.setup.pool.methods, arguments)

    @property
    def _leaving_for_good(self) -> bool:
        """Stopping and not to be replaced (a graceful stop, an elastic or pool retirement)."""
        return self._stop.is_set() and self._exit_code in (EXIT_DRAINED, EXIT_RETIRED)

    async def _drain(self) -> None:
        if self._leaving_for_good:  # say so at once, and in every beat until the process exits
            await self._beat()
        await self._stop_taking()
        # Whatever the reason to leave (SIGTERM, a recycle, an elastic pool retiring this
        # consumer, a handler abandoned past its time limit or cancel): deliveries held but not
        # started go back to the queue as the attempt they are, for another consumer to take at
        # once; running ones finish and are acked. What this process holds is neither lost nor
        # counted again. A pool retired with a drain is the exception: its queue is empty and
        # unbound, so what it holds is the last of its work.
        if not self._retire_drained:
            self.dispatcher.handing_back.set()
        if self._exit_code == EXIT_REPLACE:
            # The abandoned thread may never end: the process exits with os._exit.
            if not await self.in_flight.idle(self.settings.drain_timeout):
                log.warning("leaving with %s deliveries still running; the broker redelivers "
                            "them", self.in_flight.count)
            return
        # A recycle is this consumer's own decision, with nobody waiting for it to stop: its
        # running handlers finish, however long they take (their time limits bound them), and
        # are not cut to run again elsewhere. A stop from outside (SIGTERM, a retirement) keeps
        # the operator's bound, RPCFLEET_DRAIN_TIMEOUT.
        bound = None if self._exit_code == EXIT_RECYCLE else self.settings.drain_timeout
        if not await self.in_flight.idle(bound):
            log.warning("drain timed out with %s deliveries held; the broker will redeliver them",
                        self.in_flight.count)

    async def _stop_taking(self) -> None:
        try:  # with the broker gone the cancel cannot be confirmed: do not wait for it forever
            async with asyncio.timeout(CANCEL_TIMEOUT_S):
                await self.subscription.stop()
        except Exception as exc:  # the channel went: it delivers nothing more either
            log.warning("could not cancel the subscription cleanly: %r", exc)

    async def _on_message(self, message: Delivery) -> None:
        self.in_flight.enter()
        self.elastic.holding(self.in_flight.count)
        # The last one before a recycle (handled + held, this one included): its settlement
        # cancels the subscription before the ack (Settler.before_last_ack), which would free a
        # prefetch slot the broker fills at once.
        message.last = self.recycling.takes_last(self._handled + self.in_flight.count)
        try:
            await self.dispatcher.handle(message)
        except Exception:
            # What replaces the delivery (a reply, a copy) was refused or its channel went. A
            # closed channel hands the delivery back by itself; otherwise return it to the queue
            # after a pause, rather than lose a result or spin on a broker that refuses.
            log.exception("could not settle %s; returning it to its queue",
                          message.correlation_id)
            await settle(message, Decision.REQUEUE, pause=REQUEUE_PAUSE_S)
        finally:
            self.in_flight.leave()
            self.elastic.holding(self.in_flight.count)
            self._handled += 1
            self._consider_recycling(memory=False)

    # -- control ------------------------------------------------------------------------------
    def _on_command(self, command: Command, pool_wide: bool) -> None:
        if isinstance(command, Cancel):
            log.info("cancel of %s received%s", command.job_id,
                     " (if still queued)" if command.queued_only else "")
            if self.cancels.add(command.job_id, stop_running=not command.queued_only):
                grace_ms = int(self.settings.kill_grace * 1000)
                self.setup.slots.track(self.setup.slot, command.job_id, grace_ms,
                                       "cancelled")
        elif isinstance(command, SetPrefetch):
            self._spawn(self.prefetch.apply(command, pool_wide))
        elif isinstance(command, SetProcesses):
            self.elastic.apply(command)  # the supervisor applies it within a fraction of a second
        elif isinstance(command, RetirePool):
            log.info("pool %s retired%s: leaving for good", self.setup.pool.name,
                     " (drained)" if command.drain else "")
            self._retire_drained = command.drain
            self._leave(EXIT_RETIRED)

    # -- beats ----------------------------------------------------------------------------------
    def _entry(self) -> WorkerEntry:
        """This consumer as a beat reports it (every beat, the round-trip probe's too: the fleet
        view keeps the last one it heard). Once leaving for good, every one says so."""
        leaving = self._leaving_for_good
        subscription: Subscription | None = getattr(self, "subscription", None)  # once _serve
        entry = worker_entry(self.setup, self.prefetch.value, self.prefetch.auto,
                             self.in_flight.count, self.counters,
                             subscription is not None and subscription.serving and not leaving)
        entry.leaving = leaving
        entry.resubscribing = subscription is not None and subscription.changing and not leaving
        entry.session = self._session
        entry.cache_copied_bytes = self._copied
        entry.processes = self.elastic.processes()
        if self.topology is not None:
            entry.queue_max_priority = self.topology.max_priority
        if self.dispatcher.batchers:
            entry.batches = {name: batcher.stats.as_dict()
                             for name, batcher in self.dispatcher.batchers.items()}
        return entry

    async def _beat(self) -> None:
        await self.reports.beat()

    async def _beat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.beat_interval)
            if self._stop.is_set():
                # Leaving for good: SPEC 1.2, it beats "leaving" until it exits (the task ends
                # with the process). Replaced: its replacement beats for the slot.
                if not self._leaving_for_good:
                    return
                await self._beat()
                continue
            self._consider_recycling(memory=self.recycling.watches_memory)
            self._copied = self.copy_watch.copied()
            await self._beat()

    # -- lifecycle helpers --------------------------------------------------------------------
    def _consider_recycling(self, memory: bool) -> None:
        """Past a message or memory limit: drain, then exit for a fresh fork of the slot."""
        if self._stop.is_set():
            return
        reason = self.recycling.reason(self._handled, private_bytes() if memory else None)
        if reason is not None:
            log.info("consumer %s recycles: %s", self.setup.worker_id, reason)
            self._leave(EXIT_RECYCLE)

    def _request_replacement(self) -> None:
        self._leave(EXIT_REPLACE)

    def _leave(self, code: int) -> None:
        """Drain and exit with `code`: what the supervisor does next depends on it."""
        self._exit_code = code
        self._stop.set()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._tasks.start(coroutine)


async def _hold(message: AbstractIncomingMessage) -> None:
    """A claim queue's consumer: nothing is ever published to one."""
