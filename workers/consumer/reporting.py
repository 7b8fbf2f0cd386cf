"""What a consumer tells the fleet (SPEC: fleet events): its jobs' events (started, progress)
and its beats, fire-and-forget on a channel of their own (an event lost to a reconnect is not
worth failing a job; a beat is repeated); and the broker round trip `prefetch=auto` measures, a
beat published on the confirming channel (sync replies are not confirmed: they time nothing)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange

from protocol import WorkerEntry, codec, names
from protocol.clock import now_ms
from workers.consumer.autoprefetch import AutoPrefetch
from workers.consumer.state import ConsumerSetup

log = logging.getLogger("rpcfleet.worker")

Spawn = Callable[[Coroutine[Any, Any, None]], None]


class Reporter:
    def __init__(self, setup: ConsumerSetup, entry: Callable[[], WorkerEntry],
                 spawn: Spawn, measure: AutoPrefetch) -> None:
        self.setup = setup
        self._entry = entry  # this consumer as a beat reports it
        self._spawn = spawn
        self._measure = measure
        self._events: AbstractExchange | None = None
        self._confirmed: AbstractExchange | None = None
        self._beat_key = names.beat_key(setup.pool.name, setup.slot)

    async def attach(self, events: AbstractChannel, confirmed: AbstractExchange) -> None:
        """`events`: the fire-and-forget channel; `confirmed`: rpcfleet.events on the
        confirming channel (the round-trip probe)."""
        self._events = await events.get_exchange(names.EVENTS_EXCHANGE)
        self._confirmed = confirmed

    def job_event(self, job_id: str, kind: str, fields: dict[str, object]) -> None:
        body = codec.dumps({"job_id": job_id, "kind": kind, "worker": self.setup.worker_id,
                            "at": now_ms(), **fields})
        self._spawn(self.publish(names.job_event_key(job_id, kind), body))

    async def beat(self) -> None:
        await self.publish(self._beat_key, codec.dumps(self._entry()))

    async def publish(self, key: str, body: bytes) -> None:
        if self._events is None:
            return  # not connected yet: the first beat follows the connection
        message = aio_pika.Message(body, content_type=names.CONTENT_TYPE)
        try:
            # Not mandatory: with no gateway listening an event is moot (no Basic.Return).
            await self._events.publish(message, routing_key=key, mandatory=False)
        except Exception as exc:  # an event lost to a reconnect is not worth failing a job
            log.warning("could not publish event %s: %s", key, exc)

    async def measure_round_trip(self) -> None:
        """One broker round trip for prefetch=auto: a beat published on the confirming channel
        (the fleet view keeps the last beat it heard, this one too)."""
        if self._confirmed is None:
            return
        message = aio_pika.Message(codec.dumps(self._entry()),
                                   content_type=names.CONTENT_TYPE)
        sent = time.perf_counter()
        try:
            await self._confirmed.publish(message, routing_key=self._beat_key, mandatory=False)
        except Exception as exc:  # no sample this time; the loop tries again
            log.warning("could not measure a broker round trip: %s", exc)
            return
        self._measure.observe_round_trip(time.perf_counter() - sent)
