"""Synchronous calls over AMQP: a table from correlation id to future (SPEC: sync calls).

Publish with `mandatory` and publisher confirms: the broker's return means no pool serves the
method (404 at once, no waiting for a timeout); a nack means the queue is full (`overloaded`) or,
on a quorum queue that never took this channel's publishes, that it cannot take them on this
channel (`unavailable`, after one try on a new channel: see `transport.confirms`); a confirm that
does not come means the outcome is unknown (503 quickly, never a hang). Replies arrive on direct
reply-to, consumed no-ack on the publishing channel; a reply that matches nothing (late, stray)
is counted and dropped; every pending call fails fast when the channel closes; every call is
bounded by its deadline.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import Callable

import aiormq
from aio_pika.abc import AbstractRobustChannel
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from gateway.amqp.link import BrokerLink
from gateway.errors import (
    CallerGone,
    DeadlineExceeded,
    LostMidPublish,
    NotConfirmed,
    NoWorkers,
    Overloaded,
    Unavailable,
    UnknownMethod,
)
from gateway.metrics import Metrics
from protocol import Cancel, Request, names
from protocol.clock import now_ms
from transport.background import Background
from transport.confirms import Nack, PublishNacked
from transport.consumers import KeptConsumer
from transport.publishing import Confirmed

log = logging.getLogger("rpcfleet.gateway")


class BrokerLost(ConnectionError):
    """The channel closed while calls were waiting for replies."""


ABANDONED_REMEMBERED = 10_000  # replies of abandoned calls are expected, not "late"


class RpcClient:
    def __init__(self, link: BrokerLink, metrics: Metrics, publish_timeout: float) -> None:
        self.link = link
        self.metrics = metrics
        self.publish_timeout = publish_timeout
        self.pending: dict[str, asyncio.Future[DeliveredMessage]] = {}
        self.abandoned: OrderedDict[str, None] = OrderedDict()
        self._background = Background()  # cancels of calls whose callers hung up
        self._replies: KeptConsumer | None = None
        # The confirming channel each waiting call's reply comes on (a renewal can move a call).
        self._channel_of: dict[str, AbstractRobustChannel] = {}
        link.when_connected(self._start)
        self._drained: dict[AbstractRobustChannel, asyncio.Event] = {}
        link.when_channel(self._subscribe, self._drain)
        link.when_lost(self._fail_pending)

    @property
    def ready(self) -> bool:
        """The reply consumer is up on a live channel (what /readyz reports)."""
        return self.link.up and self._replies is not None and self._replies.ready

    async def _start(self, link: BrokerLink) -> None:
        """Once connected; again after a failure part-way (the consumer kept, started again)."""
        assert link.channel is not None
        if self._replies is None:
            self._replies = self._reply_consumer(link.channel)
        await self._replies.start()

    async def _subscribe(self, channel: AbstractRobustChannel) -> None:
        """A renewed channel's own reply consumer (link.when_channel), current once it runs."""
        replies = self._reply_consumer(channel)
        await replies.start()
        self._replies = replies

    def _reply_consumer(self, channel: AbstractRobustChannel) -> KeptConsumer:
        # Direct reply-to on the publishing channel, at the AMQP level on purpose: a robust queue
        # would try to redeclare the pseudo-queue when it restores, and publishing with reply_to
        # before consuming is refused.
        async def consume(raw: aiormq.abc.AbstractChannel) -> None:
            await raw.basic_consume(names.DIRECT_REPLY_TO, self._on_reply, no_ack=True)
        return KeptConsumer(channel, consume, "the reply consumer")

    async def close(self) -> None:
        await self._background.stop()

    async def _on_reply(self, message: DeliveredMessage) -> None:
        call_id = message.header.properties.correlation_id or ""
        future = self.pending.pop(call_id, None)
        if future is None or future.done():
            if call_id in self.abandoned:  # expected: its caller hung up
                del self.abandoned[call_id]
            else:
                self.metrics.late_replies.inc()
            return
        future.set_result(message)

    def _fail_pending(self) -> None:
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(BrokerLost("the broker connection closed"))

    async def call(self, method: str, body: bytes, deadline_ms: int,
                   priority: int = names.SYNC_PRIORITY, call_id: str | None = None,
                   trace: dict[str, str] | None = None,
                   unserved: bool = False) -> tuple[str, DeliveredMessage]:
        """Publish a call and wait for its reply; raises the gateway's errors, or CallerGone
        once `abandon(call_id)` was called. `unserved`: no live worker announced the method;
        a publish the broker routes (a queue takes it: not `unknown_method`) is then skipped
        by any consumer that comes later, and answered NoWorkers at once."""
        if not self.ready or self.link.channel is None:
            raise Overloaded("the broker is unreachable")
        call_id = call_id or new_call_id()
        remaining_ms = deadline_ms - now_ms()
        if remaining_ms <= 0:
            raise DeadlineExceeded("the deadline passed before the call was sent", call_id=call_id)
        properties = request_properties(Request(call_id, method, names.DIRECT_REPLY_TO,
                                                deadline_ms, priority=priority, trace=trace))
        future: asyncio.Future[DeliveredMessage] = asyncio.get_running_loop().create_future()
        self.pending[call_id] = future
        self._went_out_on(call_id)  # its reply comes there, even once the link renewed it
        try:
            await self._publish(method, body, properties, call_id, remaining_ms)
            if unserved:
                self.pending.pop(call_id, None)
                self._background.start(self._cancel_queued(call_id, names.CONTROL_ALL))
                raise NoWorkers(f"no live worker serves {method!r}: its queue takes requests, "
                                "but no worker has announced it", call_id=call_id)
            try:
                async with asyncio.timeout(max(deadline_ms - now_ms(), 0) / 1000):
                    return call_id, await future
            except TimeoutError:
                raise DeadlineExceeded(f"no reply from {method} before the deadline",
                                       call_id=call_id) from None
            except BrokerLost as exc:
                raise Unavailable(f"{exc} while the call was out (it may have run)",
                                  call_id=call_id) from None
        finally:
            self.pending.pop(call_id, None)
            self._left(call_id)

    async def _drain(self, channel: AbstractRobustChannel) -> None:
        """Until no call waits for a reply on `channel` (one the link replaced)."""
        if channel in self._channel_of.values():
            await self._drained.setdefault(channel, asyncio.Event()).wait()

    def _went_out_on(self, call_id: str) -> None:
        """The call goes out on the link's confirming channel now: its reply comes there."""
        self._left(call_id)
        if self.link.channel is not None:
            self._channel_of[call_id] = self.link.channel

    def _left(self, call_id: str) -> None:
        """The call no longer waits on its channel; the last one to leave a replaced channel
        lets it be closed (only then is the scan paid, and only while one is being retired)."""
        previous = self._channel_of.pop(call_id, None)
        if (previous in self._drained
                and previous not in self._channel_of.values()):
            self._drained.pop(previous).set()

    def abandon(self, call_id: str, control_key: str) -> None:
        """The caller hung up: stop waiting, and have the request skipped if it is still queued
        (a running one finishes: stopping it would cost its consumer a replacement)."""
        future = self.pending.pop(call_id, None)
        if future is None or future.done():
            return
        future.set_exception(CallerGone(call_id))
        self.abandoned[call_id] = None
        while len(self.abandoned) > ABANDONED_REMEMBERED:
            self.abandoned.popitem(last=False)
        self._background.start(self._cancel_queued(call_id, control_key))

    async def _cancel_queued(self, call_id: str, control_key: str) -> None:
        try:
            await self.link.send_control(Cancel(job_id=call_id, queued_only=True), control_key)
        except Exception as exc:  # best effort: the request's deadline still bounds it
            log.warning("could not cancel abandoned call %s: %s", call_id, exc)

    async def _publish(self, method: str, body: bytes, properties: Basic.Properties,
                       call_id: str, remaining_ms: int) -> None:
        await publish_request(self.link, self.metrics, method, body, properties, call_id,
                              min(self.publish_timeout, remaining_ms / 1000),
                              lambda: self._went_out_on(call_id),
                              callers_deadline=remaining_ms / 1000 < self.publish_timeout)


def new_call_id() -> str:
    return os.urandom(16).hex()


def request_properties(request: Request) -> Basic.Properties:
    """The AMQP properties of a request, built once for sync calls and jobs alike."""
    expiration = request.expiration_ms(now_ms())
    return Basic.Properties(
        content_type=names.CONTENT_TYPE, correlation_id=request.job_id,
        message_id=request.job_id, message_type=request.method, reply_to=request.reply_to,
        priority=request.priority, delivery_mode=2 if request.persistent else 1,
        expiration=str(expiration) if expiration is not None else None,
        headers=request.headers())


def _leader_changing(method: str) -> Unavailable:
    """A stalled nack's answer: definite (nothing was enqueued), so no id."""
    return Unavailable(f"the queue of {method!r} cannot take requests right now (a quorum queue "
                       "changing leader); nothing was enqueued")


async def publish_request(link: BrokerLink, metrics: Metrics, method: str, body: bytes,
                          properties: Basic.Properties, call_id: str, timeout: float,
                          moved: Callable[[], None] = lambda: None,
                          callers_deadline: bool = False) -> None:
    """Publish a request `mandatory` and wait for the broker's confirm, within `timeout`.

    Returned (no queue bound for the method) → UnknownMethod; nacked by a full queue or no
    connection → Overloaded (definite: nothing was enqueued); nacked by a quorum queue that never
    took this channel's publishes → tried once more on the new channel the link opens (a nack is
    definite, so a retry cannot run it twice; `moved` is told); nacked there too, the queue
    refuses it (full): Overloaded; the renewal not possible now: Unavailable (definite too);
    not confirmed in time (broker down or blocked) → NotConfirmed (overloaded), and when the
    channel never had the method confirmed the link renews it for the next calls (a quorum
    queue client stuck on a leader cut off by a partition, transport.confirms); the connection
    lost mid-publish → LostMidPublish (unavailable): both PublishUnknown, the broker may hold
    it. Never a hang. When `timeout` is the caller's deadline (`callers_deadline`: shorter
    than the publish timeout), its passing is that deadline's, not the broker's fault:
    DeadlineExceeded (504, with the id), and the channel is not judged stalled.
    """
    # Definite refusals carry no id: nothing was enqueued (a client may send it again).
    if link.channel is None or not link.up:
        raise Overloaded("the broker is unreachable")
    exchange, key = link.route(method)
    used = link.channel  # the channel of the last publish: a silence counts only against it
    waiting_to_retry = False  # nacked (nothing enqueued), the retry not sent yet
    try:
        async with asyncio.timeout(timeout):
            try:
                confirm = await link.publish(body, exchange, key, properties,
                                             confirm=True, mandatory=True, timeout=None)
            except PublishNacked as nacked:
                metrics.publish_nacks.inc()
                if nacked.verdict is not Nack.STALLED:
                    raise
                if not nacked.replaced:  # on a channel already replaced: try the current one
                    renewal = link.renew()
                    if renewal is None:
                        raise
                    waiting_to_retry = True
                    await asyncio.shield(renewal)
                    waiting_to_retry = False
                    if link.confirming.is_current(used):  # the renewal got no channel
                        raise

                moved()
                used = link.channel
                try:
                    confirm = await link.publish(body, exchange, key, properties,
                                                 confirm=True, mandatory=True, timeout=None)
                except PublishNacked as again:
                    # Nacked again on a channel opened since: the queue refuses it (full), not
                    # this channel. The judge keeps renewing at its pace meanwhile, in case the
                    # new channel was opened before the new leader was elected.
                    raise PublishNacked(again.target, Nack.REFUSED) from None
    except PublishNacked as nacked:
        if nacked.verdict is Nack.REFUSED:
            raise Overloaded("the queue refused the request (it is full)") from None
        raise _leader_changing(method) from None
    except TimeoutError:
        if waiting_to_retry:  # the nack was definite and nothing went out since: no id
            raise _leader_changing(method) from None
        if callers_deadline:
            raise DeadlineExceeded("the deadline passed before the broker confirmed the call",
                                   call_id=call_id) from None
        # A channel stuck on a cut-off leader is replaced for the next calls (not waited for);
        # a silence on a channel replaced since says nothing of the current one.
        if link.confirming.is_current(used):
            await link.confirming.stalled(key, "never confirmed")
        raise NotConfirmed("the broker did not confirm the request in time (down or "
                           "blocked)", call_id=call_id) from None
    except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
        raise LostMidPublish(f"the broker connection failed mid-publish: {type(exc).__name__}",
                             call_id=call_id) from None
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # this request itself is being cancelled (its caller left, or shutdown)
        # aiormq cancels the confirms a closing channel still owes: the outcome is unknown.
        raise LostMidPublish("the broker connection closed before it confirmed the request",
                             call_id=call_id) from None
    if confirm is not Confirmed.ACKED:
        metrics.publish_returns.inc()
        raise UnknownMethod(f"no pool serves the method {method!r}", call_id=call_id)
