"""Consumers that come back, once, when their channel does (SPEC: worker semantics, self-healing).

aio-pika's robust channel reopens itself after the broker closed it (a PRECONDITION_FAILED, a
`consumer_timeout`) and after a reconnect, and fires its `reopen_callbacks` in both cases (never
the connection's `reconnect_callbacks` for a channel alone). What it restores by itself is only
what it declared: and it restores a server-named queue by declaring its old `amq.gen-*` name
again, which the broker refuses (reserved prefix), so a private queue never comes back. We
therefore subscribe at the AMQP level and do it again from `reopen_callbacks`, under a lock, only
while no live consumer exists, retrying while the broker still refuses.

The pool subscription (`workers.consumer.subscription`) is one too, with prefetch changes and
the broker's basic.cancel on top.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from aio_pika.abc import AbstractRobustChannel
from aiormq.abc import AbstractChannel as RawChannel
from aiormq.abc import DeliveredMessage

log = logging.getLogger("rpcfleet.transport")

Subscribe = Callable[[RawChannel], Awaitable[None]]
Unsubscribe = Callable[[RawChannel], Awaitable[None]]
Prepare = Callable[[bool], Awaitable[None]]
OnMessage = Callable[[DeliveredMessage], Coroutine[Any, Any, Any]]
RESTORE_RETRY_S = 0.5  # between attempts to consume again while the broker refuses


class KeptConsumer:
    """What `subscribe` sets up on the channel, set up again each time the channel reopens or
    the consumer is `lost` (the broker cancelled it), until `stop`.

    `prepare(retrying)` runs before each restore's subscribe (inside the lock; `retrying` after a
    failed attempt: the queue may be gone); `on_change` is told when it goes down and comes back.
    The one restore of every consumer rpcfleet keeps: the gateway's reply and events consumers,
    the worker's control queue and its pool subscription (`workers.consumer.subscription`, which
    adds live prefetch changes through `renew`)."""

    def __init__(self, channel: AbstractRobustChannel, subscribe: Subscribe, what: str, *,
                 prepare: Prepare | None = None,
                 on_change: Callable[[], None] = lambda: None) -> None:
        self._channel = channel
        self._subscribe = subscribe
        self._what = what  # for the log: "the reply consumer", "the control queue"
        self._prepare = prepare
        self._on_change = on_change
        self._raw: RawChannel | None = None
        self._wanted = False  # subscribed is what it should be (started, not stopped)
        self._lock = asyncio.Lock()
        self._restoring: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()  # set at each successful subscribe
        channel.reopen_callbacks.add(self._reopened)

    @property
    def ready(self) -> bool:
        """Subscribed on a channel that is still open."""
        return self._raw is not None and not self._raw.is_closed

    async def start(self) -> None:
        """Subscribe, unless it is already (a set-up run again after a failure part-way, whose
        channel's reopen may have restored it meanwhile): never a second consumer."""
        async with self._lock:
            self._wanted = True
            if not self.ready:
                await self._start()

    async def stop(self, unsubscribe: Unsubscribe | None = None) -> None:
        """No more restores; `unsubscribe` (a basic.cancel) runs on the live channel, if any.
        Not wanted from the call on, not from when the lock comes: a renewal holding the lock
        (a prefetch change waiting for a long handler) then does not subscribe again, even if
        whoever stops gives up waiting for the lock."""
        self._wanted = False
        async with self._lock:
            await self._drop(unsubscribe)

    async def renew(self, unsubscribe: Unsubscribe, between: Callable[[], Awaitable[object]]
                    ) -> None:
        """Unsubscribe, wait for `between`, subscribe again, with no restore in between (a
        prefetch change: the new limit applies to a new consumer only)."""
        async with self._lock:
            await self._drop(unsubscribe)
            await between()
            if self._wanted:  # stopped meanwhile (or before): it stays stopped
                await self._start()

    @property
    def wanted(self) -> bool:
        """Started and not stopped: what it should be is subscribed."""
        return self._wanted

    def lost(self) -> None:
        """The broker cancelled the consumer (its queue deleted): subscribe again."""
        self._raw = None
        self._schedule()

    async def wait_ready(self, timeout: float) -> bool:
        """Until subscribed on a live channel again (False when `timeout` passed first)."""
        try:
            async with asyncio.timeout(timeout):
                while not self.ready:
                    self._subscribed.clear()
                    await self._subscribed.wait()
        except TimeoutError:
            return False
        return True

    async def _drop(self, unsubscribe: Unsubscribe | None) -> None:
        """Forget the subscription (under the lock); `unsubscribe` it if its channel lives."""
        raw, self._raw = self._raw, None
        if unsubscribe is not None and raw is not None and not raw.is_closed:
            await unsubscribe(raw)

    async def _start(self) -> None:
        raw = await self._channel.get_underlay_channel()
        await self._subscribe(raw)
        self._raw = raw
        self._subscribed.set()

    def _reopened(self, *args: object) -> None:
        # Called inside the channel's own restore: subscribe from a task, not from here.
        log.warning("%s: its channel was reopened; consuming again", self._what)
        self._schedule()

    def _schedule(self) -> None:
        self._on_change()
        if self._restoring is None or self._restoring.done():
            self._restoring = asyncio.ensure_future(self._restore())

    async def _restore(self) -> None:
        retrying = False
        while True:
            try:
                async with self._lock:
                    if not self._wanted or self.ready:
                        return  # stopped meanwhile, or already back: never a second consumer
                    await self._channel.ready()
                    if self._prepare is not None:
                        await self._prepare(retrying)
                    if not self._wanted:  # stopped while it prepared (which may take seconds)
                        return
                    await self._start()
                log.warning("%s restored", self._what)
                self._on_change()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the channel went again meanwhile: its reopen retries
                log.warning("could not restore %s yet: %r", self._what, exc)
                retrying = True
                await asyncio.sleep(RESTORE_RETRY_S)


def private_queue(exchange: str, keys: Sequence[str], on_message: OnMessage) -> Subscribe:
    """A fresh server-named exclusive queue bound to `keys` of `exchange`, consumed without acks
    (fleet events, control commands: what was sent while it was down is not kept for it)."""
    async def subscribe(raw: RawChannel) -> None:
        declared = await raw.queue_declare("", exclusive=True, auto_delete=True)
        assert declared.queue is not None
        for key in keys:
            await raw.queue_bind(declared.queue, exchange, routing_key=key)
        await raw.basic_consume(declared.queue, on_message, no_ack=True)
    return subscribe
