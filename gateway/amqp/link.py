"""One robust AMQP connection per gateway process, opened in the lifespan, retried until the
broker answers (the gateway starts, and says it is not ready, while the broker is down)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from pamqp.commands import Basic
from pydantic import BaseModel
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from gateway.settings import GatewaySettings
from protocol import backoff, codec, names
from transport import background
from transport.background import Background
from transport.cluster import connect_cluster, masked
from transport.confirms import ConfirmingChannel, Nack, NackJudge, OnChannel, PublishNacked
from transport.publishing import Confirmed, underlay
from transport.topology import declare_exchanges

log = logging.getLogger("rpcfleet.gateway")
SET_UP_RETRY_S = 0.5  # a part whose set-up failed once connected is tried again...
SET_UP_RETRY_MAX_S = 5.0  # ... at most this long apart

RECONNECT_INTERVAL_S = 0.5  # jittered, 0.25-0.75 s: back before the consumers (1.5 s)
OnConnected = Callable[["BrokerLink"], Awaitable[None]]


class BrokerLink:
    """The connection, a confirming channel for calls, and a plain one for fleet traffic."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.connection: AbstractRobustConnection | None = None
        self.plain: AbstractRobustChannel | None = None  # events, control, stats
        self.connected = asyncio.Event()
        self._on_connected: list[OnConnected] = []
        self._on_lost: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        # Callbacks registered after connecting.
        self._background = Background()
        # The confirming channel (direct reply-to lives there), replaced when a quorum queue
        # stalls it (transport.confirms); a replaced one is kept for the longest call.
        self.confirming = ConfirmingChannel(
            NackJudge(quorum=settings.queues == "quorum"),
            retire_after=settings.rpc_timeout_max + settings.publish_timeout)
        self.confirming.when_lost(self._lost)
        # This process on rpcfleet.events (the app-id of what it publishes there): its own
        # announcements come back to it through its events queue, and are dropped there.
        self.origin = f"gateway-{os.getpid()}-{os.urandom(4).hex()}"
        # Where a request for a method goes: (exchange, routing key). The requests exchange by
        # the method's name, unless the fleet view routes it (a method two pools announce).
        self.route: Callable[[str], tuple[str, str]] = lambda method: (names.EXCHANGE, method)

    @property
    def channel(self) -> AbstractRobustChannel | None:
        """The confirming channel, as it is now."""
        return self.confirming.current

    @property
    def judge(self) -> NackJudge:
        return self.confirming.judge

    def renew(self, why: str = "nacked") -> asyncio.Task[None] | None:
        """Replace the confirming channel (transport.confirms.ConfirmingChannel.renew)."""
        return self.confirming.renew(why)

    @property
    def up(self) -> bool:
        return (self.connection is not None and not self.connection.is_closed
                and self.channel is not None and not self.channel.is_closed)

    def when_connected(self, callback: OnConnected) -> None:
        """Run once connected (the topology and consumers survive reconnects on their own);
        at once if the link connected before the callback was registered (a part of the app that
        starts slowly, such as a job store opening a database, must not miss it)."""
        self._on_connected.append(callback)
        if self.connected.is_set():
            self._background.start(self._set_up(callback))

    async def _set_up(self, callback: OnConnected) -> None:
        """One part's set-up once connected. A failure is that part's (a node that died during
        it, a queue the broker refuses to declare as asked: its readiness stays false, /readyz
        says which), logged with its reason; the other parts still start, and the failed one
        is tried again in the background (SET_UP_RETRY_S, doubling to SET_UP_RETRY_MAX_S) until
        it succeeds: a mended queue, or a node back, brings the part back without a restart.
        Each part's set-up may run again after a failure part-way (it resumes what it has)."""
        if not await self._try_set_up(callback, 1):
            self._background.start(self._retry_set_up(callback))

    async def _try_set_up(self, callback: OnConnected, attempt: int) -> bool:
        try:
            await callback(self)
        except Exception as exc:
            if attempt % 10 == 1:  # the first time, then every tenth
                log.error("could not set up %s once connected (attempt %s, retrying): %s: %s",
                          getattr(callback, "__qualname__", callback), attempt,
                          type(exc).__name__, exc)
            return False
        if attempt > 1:
            log.info("set up %s once connected (attempt %s)",
                     getattr(callback, "__qualname__", callback), attempt)
        return True

    async def _retry_set_up(self, callback: OnConnected) -> None:
        pause, attempt = SET_UP_RETRY_S, 1
        while True:
            await asyncio.sleep(pause)
            pause = min(pause * 2, SET_UP_RETRY_MAX_S)
            attempt += 1
            if await self._try_set_up(callback, attempt):
                return

    def when_channel(self, setup: OnChannel, drained: OnChannel) -> None:
        """`setup` runs on every new confirming channel before anything is published on it (the
        direct reply-to consumer); a channel replaced by `renew` stays open until `drained`
        returns (sync calls published there get their replies there)."""
        self.confirming.when_new(setup, drained)

    async def send_control(self, command: BaseModel, key: str, *, confirm: bool = False) -> bool:
        """A command to the consumers bound to `key` on rpcfleet.control: on the plain channel,
        or on the confirming one when the caller must know the broker took it (`confirm`).
        False when not connected. Not mandatory: a command nobody listens to is moot, not an
        error (and no Basic.Return to log)."""
        return await self._send(names.CONTROL_EXCHANGE, key, command, confirm)

    async def send_event(self, event: BaseModel, key: str) -> bool:
        """An event on rpcfleet.events (fire and forget, on the plain channel), stamped with this
        process's `origin`. False when not connected."""
        return await self._send(names.EVENTS_EXCHANGE, key, event, False)

    async def _send(self, exchange: str, key: str, message: BaseModel, confirm: bool) -> bool:
        """One fleet message: JSON, stamped with `origin`, within `publish_timeout`."""
        if self._channel(confirm) is None:
            return False
        await self.publish(codec.dumps(message), exchange, key,
                           Basic.Properties(content_type=names.CONTENT_TYPE, app_id=self.origin),
                           confirm=confirm, timeout=self.settings.publish_timeout)
        return True

    async def publish(self, body: bytes, exchange: str, key: str, properties: Basic.Properties,
                      *, confirm: bool, timeout: float | None, mandatory: bool = False
                      ) -> Confirmed | None:
        """The one way this process publishes: straight onto an AMQP channel, with no aio-pika
        Message or Exchange object (they cost more than the frames on the hot paths).

        On the confirming channel (`confirm`) it returns once the broker answered, what it did
        (`transport.publishing`): ACKED, or RETURNED when no queue took a `mandatory` one; a
        nack raises PublishNacked with the judge's verdict (transport.confirms). Unconfirmed
        publishes return None once written. A missing or closed channel raises
        ChannelInvalidStateError at once (`transport.publishing.underlay`); no answer within
        `timeout` raises TimeoutError: never a hang. `timeout=None` only under the caller's own
        bound (a sync call's publish: one timer a call, not two)."""
        if not confirm:
            async with asyncio.timeout(timeout):
                raw = await underlay(self.plain)
                await raw.basic_publish(body, exchange=exchange, routing_key=key,
                                        properties=properties, mandatory=mandatory)
            return None
        # Under the caller's bound (None): no timeout of its own (1.6 us a call).
        async with contextlib.nullcontext() if timeout is None else asyncio.timeout(timeout):
            published = await self.confirming.publish(body, exchange=exchange, routing_key=key,
                                                      target=key, properties=properties,
                                                      mandatory=mandatory)
        if published.confirmed is Confirmed.NACKED:
            if not published.current:  # replaced meanwhile: its verdict stands
                raise PublishNacked(key, Nack.STALLED, replaced=True)
            raise PublishNacked(key, self.judge.nacked(key))
        return published.confirmed

    def _channel(self, confirm: bool) -> AbstractRobustChannel | None:
        return self.channel if confirm else self.plain

    def when_lost(self, callback: Callable[[], None]) -> None:
        self._on_lost.append(callback)

    async def __aenter__(self) -> BrokerLink:
        self._task = asyncio.create_task(self._connect())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await background.stop(self._task)
        await self.confirming.close()
        await self._background.stop()
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()

    async def _connect(self) -> None:
        # Back off up to 5 s between attempts: a broker that comes up is noticed quickly.
        async for attempt in AsyncRetrying(
            wait=backoff.wait(0.2, 5.0),
            retry=retry_if_exception_type((OSError, aio_pika.exceptions.AMQPError,
                                           asyncio.TimeoutError, ConnectionError)),
            before_sleep=self._unreachable,
        ):
            with attempt:
                await self._open()
        for callback in self._on_connected:
            await self._set_up(callback)
        self.connected.set()
        log.info("gateway connected to the broker")

    def _unreachable(self, state: RetryCallState) -> None:
        """Say which broker cannot be reached and why (the first time, then every tenth):
        a mistyped RPCFLEET_AMQP_URL shows in the log, its password masked."""
        if state.attempt_number % 10 != 1:
            return
        error = state.outcome.exception() if state.outcome is not None else None
        log.warning("cannot reach the broker at %s (%s: %s); retrying until it answers",
                    masked(self.settings.amqp_url), type(error).__name__, error)

    async def _open(self) -> None:
        connection = await connect_cluster(
            self.settings.amqp_url, heartbeat=self.settings.heartbeat,
            # Back within a second of the broker: before the consumers, so their new sessions
            # find a gateway to replay the cancels stored meanwhile.
            reconnect_interval=RECONNECT_INTERVAL_S,
            client_properties={"connection_name": "rpcfleet-gateway"})
        try:
            channel = await connection.channel(publisher_confirms=True)
            plain = await connection.channel(publisher_confirms=False)
            await declare_exchanges(channel)
        except BaseException:
            await connection.close()
            raise
        connection.close_callbacks.add(self._lost)
        self.confirming.attach(connection, channel)
        self.connection, self.plain = connection, plain

    def _lost(self, *args: Any) -> None:
        for callback in self._on_lost:
            callback()
