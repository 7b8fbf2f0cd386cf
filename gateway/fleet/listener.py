"""Each gateway process reads rpcfleet.events through its own exclusive queue: worker beats feed
the fleet view; job events go to whoever subscribed (the jobs service)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiormq.abc import DeliveredMessage
from pydantic import ValidationError

from gateway.amqp.link import BrokerLink
from gateway.fleet.view import FleetView
from protocol import WorkerEntry, names
from transport.consumers import KeptConsumer, private_queue

log = logging.getLogger("rpcfleet.gateway")

JobEventHandler = Callable[[str, bytes], Awaitable[None]]  # (routing key, body)
NewConsumerHandler = Callable[[WorkerEntry], Awaitable[None]]


class EventListener:
    def __init__(self, link: BrokerLink, view: FleetView) -> None:
        self.view = view
        self.origin = link.origin
        self.job_handlers: list[JobEventHandler] = []
        self.new_consumer_handlers: list[NewConsumerHandler] = []
        self.events: KeptConsumer | None = None
        link.when_connected(self._start)

    async def _start(self, link: BrokerLink) -> None:
        """Once connected; again after a failure part-way (the consumer kept, started again)."""
        assert link.plain is not None
        if self.events is None:
            self.events = KeptConsumer(
                link.plain, private_queue(names.EVENTS_EXCHANGE, ("worker.#", "job.#", "pool.#"),
                                          self._on_event),
                "the fleet events queue")
        await self.events.start()
        self.view.listening()

    async def _on_event(self, message: DeliveredMessage) -> None:
        if message.header.properties.app_id == self.origin:
            return  # this process's own announcement: it acted on it when it sent it
        key = message.routing_key or ""
        if key.startswith("worker."):
            try:
                entry = WorkerEntry.model_validate_json(message.body)
            except ValidationError as exc:
                log.warning("ignoring a malformed beat on %s: %s", key, exc)
                return
            if self.view.update(entry):
                for on_new in self.new_consumer_handlers:
                    await on_new(entry)
        elif key.startswith("pool.") and key.endswith(".retired"):
            self.view.retire(key[len("pool."):-len(".retired")])
        elif key.startswith("job."):
            for handler in self.job_handlers:
                await handler(key, message.body)
