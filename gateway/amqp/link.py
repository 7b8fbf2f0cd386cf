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
import aiormq
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from pamqp.commands import Basic
from pydantic import BaseModel
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from gateway.settings import GatewaySettings
from protocol import backoff, codec, names
from transport import background
from transport.background import Background
from transport.cluster import connect_cluster, masked
from transport.confirms import Nack, NackJudge, PublishNacked, judged
from transport.publishing import Confirmed, publish_confirmed
from transport.topology import declare_exchanges

log = logging.getLogger("rpcfleet.gateway")

RECONNECT_INTERVAL_S = 0.5  # jittered, 0.25-0.75 s: back before the consumers (1.5 s)
OnConnected = Callable[["BrokerLink"], Awaitable[None]]
OnChannel = Callable[[AbstractRobustChannel], Awaitable[None]]
Drained = Callable[[AbstractRobustChannel], Awaitable[None]]


class BrokerLink:
    """The connection, a confirming channel for calls, and a plain one for fleet traffic."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.connection: AbstractRobustConnection | None = None
        self.channel: AbstractRobustChannel | None = None  # confirms; direct reply-to lives here
        self.plain: AbstractRobustChannel | None = None  # events, control, stats
        self.connected = asyncio.Event()
        self._on_connected: list[OnConnected] = []
        self._on_lost: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        # Callbacks registered after connecting, replaced channels being retired.
        self._background = Background()
        # What a nack on the confirming channel means, and when to replace that channel
        # (transport.confirms): only quorum queues stall a channel.
        self.judge = NackJudge(quorum=settings.queues == "quorum")
        self._on_channel: list[OnChannel] = []  # set up each new confirming channel (replies)
        self._drained: list[Drained] = []  # until nothing waits on a replaced channel (calls)
        self._renewal: asyncio.Task[None] | None = None
        # This process on rpcfleet.events (the app-id of what it publishes there): its own
        # announcements come back to it through its events queue, and are dropped there.
        self.origin = f"gateway-{os.getpid()}-{os.urandom(4).hex()}"
        # Where a request for a method goes: (exchange, routing key). The requests exchange by
        # the method's name, unless the fleet view routes it (a method two pools announce).
        self.route: Callable[[str], tuple[str, str]] = lambda method: (names.EXCHANGE, method)

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
            self._background.start(callback(self))

    def when_channel(self, setup: OnChannel, drained: Drained) -> None:
        """`setup` runs on every new confirming channel before anything is published on it (the
        direct reply-to consumer); a channel replaced by `renew` stays open until `drained`
        returns (sync calls published there get their replies there)."""
        self._on_channel.append(setup)
        self._drained.append(drained)

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
                      *, confirm: bool, timeout: float, mandatory: bool = False
                      ) -> Confirmed | None:
        """The one way this process publishes: straight onto an AMQP channel, with no aio-pika
        Message or Exchange object (they cost more than the frames on the hot paths).

        On the confirming channel (`confirm`) it returns once the broker answered, what it did
        (`transport.publishing`): ACKED, or RETURNED when no queue took a `mandatory` one; a
        nack raises PublishNacked with the judge's verdict (transport.confirms). Unconfirmed
        publishes return None once written. A missing or closed channel raises
        ChannelInvalidStateError at once (the raw channel would wait for a writer that is
        gone); no answer within `timeout` raises TimeoutError: never a hang."""
        channel = self._channel(confirm)
        if channel is None or channel.is_closed:
            raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
        async with asyncio.timeout(timeout):
            raw = await channel.get_underlay_channel()
            if not confirm:
                await raw.basic_publish(body, exchange=exchange, routing_key=key,
                                        properties=properties, mandatory=mandatory)
                return None
            confirmed = await publish_confirmed(raw, body, exchange=exchange, routing_key=key,
                                                properties=properties, mandatory=mandatory)
        if confirmed is Confirmed.NACKED:
            if channel is not self.channel:  # replaced meanwhile: its verdict stands
                raise PublishNacked(key, Nack.STALLED, replaced=True)
            raise PublishNacked(key, self.judge.nacked(key))
        if confirmed is Confirmed.ACKED and channel is self.channel:
            self.judge.confirmed(key)
        return confirmed

    def renew(self, why: str = "nacked") -> asyncio.Task[None] | None:
        """Replace the confirming channel by a new one (transport.confirms: a quorum queue that
        refuses a channel started on a dead leader takes the next one), at the judge's pace;
        `why`: what the broker did to publishes there ("nacked", "never confirmed").
        Returns the renewal under way, if any, for a publish to wait on before trying again."""
        if self._renewal is not None and not self._renewal.done():
            return self._renewal
        if self.connection is None or self.connection.is_closed or not self.judge.renewal_due():
            return None
        self._renewal = asyncio.ensure_future(self._renew(self.connection, why))
        return self._renewal

    async def _renew(self, connection: AbstractRobustConnection, why: str) -> None:
        old = self.channel
        try:
            channel = await connection.channel(publisher_confirms=True)
            for setup in self._on_channel:
                await setup(channel)
        except Exception as exc:  # the connection is going: its reconnect brings a channel
            log.warning("could not open a new confirming channel: %s", exc)
            return
        self._watch(channel)
        self.channel = channel
        log.warning("the broker %s publishes on a channel that never had them confirmed "
                    "(a quorum queue changing leader): publishing on a new channel", why)
        if old is not None:
            old.close_callbacks.discard(self._lost)
            self._background.start(self._retire(old))

    async def _retire(self, channel: AbstractRobustChannel) -> None:
        """Close a replaced channel once nothing waits on it, or after the longest call."""
        longest = self.settings.rpc_timeout_max + self.settings.publish_timeout
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(longest):
                for drained in self._drained:
                    await drained(channel)
        with contextlib.suppress(Exception):
            await channel.close()

    def _watch(self, channel: AbstractRobustChannel) -> None:
        """A confirming channel: its loss fails what waits on it; reopened, it is new."""
        channel.close_callbacks.add(self._lost)
        judged(self.judge, channel).opened()

    def _channel(self, confirm: bool) -> AbstractRobustChannel | None:
        return self.channel if confirm else self.plain

    def when_lost(self, callback: Callable[[], None]) -> None:
        self._on_lost.append(callback)

    async def __aenter__(self) -> BrokerLink:
        self._task = asyncio.create_task(self._connect())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await background.stop(self._task, self._renewal)
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
            await callback(self)
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
        self._watch(channel)
        self.connection, self.channel, self.plain = connection, channel, plain

    def _lost(self, *args: Any) -> None:
        for callback in self._on_lost:
            callback()
