"""Sync replies whose caller may have gone with a broker node: sent on a connection of their own.

RabbitMQ 3.10 crashes the channel, and with it the whole connection (541 INTERNAL_ERROR), that
publishes to a direct reply-to address whose channel lived on a node that is no longer running
(`rabbit_channel:deliver_reply`, a `case_clause`; measured in tests/cluster/test_failover.py).
After a node dies, the pool queue still holds the sync calls its gateways published through it:
a consumer that answers one of them inline loses its connection, gets the call redelivered,
answers again, and so on until the call expires: the minute of refusals issue 27 saw.

So a consumer sends the reply of a sync call published before its current session began (it
started or reconnected since: a node may have died, whether its own or its caller's) on a
connection that carries nothing else, then acks the request on its own channel. A caller that is
alive gets the reply as usual; one that is gone takes only this connection down, reopened for the
next stray. Replies sent after one that takes it down are lost with it (no confirms: a direct
reply-to publish is confirmed at once anyway), so a live caller among them gets a 504.
"When it was published" is the request's deadline header minus its expiration, both set by the
gateway at publish; CLOCK_SKEW_MS covers clocks of different hosts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from pamqp.commands import Basic
from yarl import URL

from protocol.clock import now_ms
from protocol.requests import read_deadline
from transport.cluster import CONNECT_TIMEOUT_S, node_urls
from workers.consumer.delivery import Delivery

log = logging.getLogger("rpcfleet.worker")

CLOCK_SKEW_MS = 2000
CLOSE_WAIT_S = 1.0


class StrayReplies:
    def __init__(self, amqp_url: str, heartbeat: int) -> None:
        self._urls = node_urls(amqp_url)
        self._heartbeat = heartbeat
        self._renew = False
        self._opening = asyncio.Lock()  # replies sent at once share one new connection
        self._node: Callable[[], URL | None] = lambda: None
        # Calls published before this may have lost their caller's node: from the start too (a
        # consumer that starts after a node died finds that node's calls in the queue).
        self._since_ms = now_ms() + CLOCK_SKEW_MS
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None

    def follow(self, node: Callable[[], URL | None]) -> None:
        """Open on the node the consumer's own connection uses (`node()`) first: the node it
        reached last is the one most likely alive and reachable from here."""
        self._node = node

    def new_session(self) -> None:
        """The consumer reconnected: calls published until now (and a skew) may be strays, and
        the strays' connection, opened before, may be on a node that is gone or cut off without
        a word (its heartbeat would tell only later): the next stray opens a new one."""
        self._since_ms = now_ms() + CLOCK_SKEW_MS
        self._renew = True

    def is_stray(self, message: Delivery) -> bool:
        deadline, expiration = read_deadline(message.headers), message.expiration
        if deadline is None or not expiration or not expiration.isdigit():
            return False
        return deadline - int(expiration) < self._since_ms

    async def send(self, reply_to: str, body: bytes, properties: Basic.Properties) -> None:
        """Publish the reply on the strays' own connection (opened on first use). A failure is
        logged, not raised: its caller is most likely gone with its node."""
        try:
            channel = await self._open()
            raw = await channel.get_underlay_channel()
            await raw.basic_publish(body, routing_key=reply_to, properties=properties)
        except Exception as exc:
            log.info("a reply to %s published before this consumer's reconnect was not sent "
                     "(%s: its caller went with a broker node)", properties.correlation_id,
                     type(exc).__name__)
            await self.close()

    async def _open(self) -> AbstractChannel:
        async with self._opening:
            if self._renew:
                self._renew = False
                await self.close()
            if self._channel is not None and not self._channel.is_closed:
                return self._channel
            await self.close()
            last: Exception | None = None
            for url in self._in_order():
                try:
                    self._connection = await aio_pika.connect(
                        url, timeout=CONNECT_TIMEOUT_S, heartbeat=self._heartbeat,
                        client_properties={"connection_name": "rpcfleet-strays"})
                    self._channel = await self._connection.channel(publisher_confirms=False)
                    return self._channel
                except Exception as exc:
                    last = exc
            assert last is not None
            raise last

    def _in_order(self) -> list[str]:
        node = self._node()
        if node is None:
            return self._urls
        first = [url for url in self._urls
                 if (URL(url).host, URL(url).port) == (node.host, node.port)]
        return first + [url for url in self._urls if url not in first]

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and not connection.is_closed:
            try:  # a silent peer never answers the close: do not wait for it
                await asyncio.wait_for(connection.close(), CLOSE_WAIT_S)
            except Exception as exc:  # it is being torn down anyway
                log.debug("closing the strays' connection: %r", exc)
