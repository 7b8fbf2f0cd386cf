"""The consumer's control queue (SPEC: control commands): a private queue bound to every
consumer's key, its pool's and its own on `rpcfleet.control`, kept across reconnects; commands
read there (a newer gateway's unknown command or a malformed one is logged and ignored) go to
the runtime. And the handshake of a new session: the consumer announces itself in a beat, the
gateways replay the cancels of jobs that may still be queued and then say `replayed`, and the
consumer takes no message before that (or before the grace ends: no gateway up)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractRobustConnection
from aiormq.abc import DeliveredMessage

from protocol import Replayed, names
from protocol.fleet import Command, UnknownCommand, read_control
from transport.consumers import KeptConsumer, private_queue
from workers.consumer.state import ConsumerSetup

log = logging.getLogger("rpcfleet.worker")

REPLAY_GRACE_S = 1.0  # a gateway answers a first beat in milliseconds; none up costs 1 s once
CONTROL_BACK_S = 10.0  # a reopened connection restores its channels within a second or two


class ControlQueue:
    def __init__(self, setup: ConsumerSetup,
                 on_command: Callable[[Command, bool], None]) -> None:
        self.setup = setup
        self._on_command = on_command
        self._replayed = asyncio.Event()
        self._kept: KeptConsumer | None = None

    async def start(self, connection: AbstractRobustConnection) -> None:
        keys = (names.CONTROL_ALL, names.control_pool_key(self.setup.pool.name),
                names.control_worker_key(self.setup.worker_id))
        channel = await connection.channel(publisher_confirms=False)
        self._kept = KeptConsumer(
            channel, private_queue(names.CONTROL_EXCHANGE, keys, self._on_message),
            "the control queue")
        await self._kept.start()

    async def learn_cancels(self, announce: Callable[[], Awaitable[None]]) -> None:
        """Announce ourselves (a beat), then wait for the gateways' replay of the cancels."""
        self._replayed.clear()
        await announce()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._replayed.wait(), REPLAY_GRACE_S)

    async def back(self) -> None:
        """After a lost channel or connection: until the queue is consumed again (to hear the
        replay), at most CONTROL_BACK_S."""
        if self._kept is None or not await self._kept.wait_ready(CONTROL_BACK_S):
            log.warning("the control queue is not back yet; announcing the new session anyway")

    async def _on_message(self, message: DeliveredMessage) -> None:
        try:
            command = read_control(message.body)
        except UnknownCommand as exc:
            log.info("ignoring control command %r: this version does not know it (a newer "
                     "gateway's, during a rolling upgrade?)", exc.op)
            return
        except ValueError as exc:
            log.warning("ignoring a malformed control command: %s", exc)
            return
        if isinstance(command, Replayed):
            self._replayed.set()
        else:
            # To its pool (or all) rather than to this consumer alone: the runtime lets the
            # host's other slots know too (one being replaced now hears nothing itself).
            self._on_command(command, message.routing_key
                             != names.control_worker_key(self.setup.worker_id))
