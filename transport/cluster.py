"""Robust AMQP connections over the nodes of one RabbitMQ cluster (SPEC 1.1, broker clusters).

`RPCFLEET_AMQP_URL` may hold several comma-separated URLs. `connect_cluster` connects to the first
live one; when that connection is lost, every reconnect attempt of aio-pika's robust connection
goes to the next node in turn, so gateways and workers move to a live node by themselves, and the
robust channels restore their topology, consumers and prefetch there (see
`workers.consumer.subscription` for the consumers aio-pika does not restore).

aio-pika connects to `connection.url`, read once per attempt; `ClusterConnection.url` hands out the
nodes in turn. A node that is down costs one attempt; one whose host is silent, at most
`CONNECT_TIMEOUT_S`. Attempts are `reconnect_interval` apart,
jittered by +-50 % (`ClusterConnection.reconnect_interval`): a fleet that lost the same node does
not come back to the next one in lockstep.

A node that goes silent (powered off, cut off, frozen) is left after two heartbeats of hearing
nothing from it (`transport.silence`), sooner than aiormq's own (heartbeat + 1) x 3 s.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from aio_pika.robust_connection import RobustConnection
from yarl import URL

from transport.silence import SilenceWatch, silence_s

RECONNECT_INTERVAL_S = 1.5  # between attempts, jittered: 0.75-2.25 s (aio-pika's default is 5)
# Of each attempt, the first and every reconnect (aio-pika keeps the first's). Without one, an
# attempt at a node whose host went silent (packets dropped: powered off, cut off) waits for the
# kernel to give up its SYNs, about two minutes, before the next node is tried.
CONNECT_TIMEOUT_S = 5.0


def jittered(interval: float) -> float:
    """`interval` +-50 %: processes that lost the same node do not retry in lockstep."""
    return interval * random.uniform(0.5, 1.5)


def node_urls(amqp_url: str) -> list[str]:
    """The nodes of `RPCFLEET_AMQP_URL`: one URL, or several separated by commas."""
    urls = [part.strip() for part in amqp_url.split(",") if part.strip()]
    if not urls:
        raise ValueError("RPCFLEET_AMQP_URL names no broker")
    return urls


def checked_amqp_url(amqp_url: str) -> str:
    """`amqp_url` if each node is an AMQP URL with a host; else ValueError saying which is not
    (aio-pika would retry a URL without a scheme or host for ever, as if the broker were
    down)."""
    for node in node_urls(amqp_url):
        url = URL(node)
        if url.scheme not in ("amqp", "amqps") or not url.host:
            raise ValueError(f"{_masked(url)!r} is not an AMQP URL: "
                             "amqp://user:password@host:5672/vhost (amqps:// for TLS), several "
                             "separated by commas")
    return amqp_url


def masked(amqp_url: str) -> str:
    """`RPCFLEET_AMQP_URL` fit for a log: every node, passwords replaced by ******."""
    return ",".join(_masked(URL(node)) for node in node_urls(amqp_url))


def _masked(node: URL) -> str:
    return str(node.with_password("******") if node.password else node)


def with_options(url: URL, nodes: Sequence[str]) -> list[URL]:
    """The nodes, each carrying the connection's options. aio-pika puts them (heartbeat,
    timeouts, the connection name...) in the query of the URL it builds for the first node, and
    aiormq reads the heartbeat from the URL of each attempt: a bare node URL would connect with
    aiormq's 60 s heartbeat whatever RPCFLEET_HEARTBEAT says."""
    options = {key: value for key, value in url.query.items() if key not in ("nodes", "first")}
    return [URL(node).update_query(options) for node in nodes]


class ClusterConnection(RobustConnection):
    def __init__(self, url: URL | str, *args: Any, nodes: Sequence[str] = (),
                 first: int = 0, **kwargs: Any) -> None:
        self._nodes = with_options(URL(url), nodes) or [URL(url)]
        self._turn = first
        self._current = first
        super().__init__(self._nodes[first], *args, **kwargs)
        self._turn = first  # what __init__ read does not count as an attempt
        # Passed to aiormq with every attempt (aio-pika's parameters would drop an unknown one).
        heartbeat = self._nodes[first].query.get("heartbeat")  # aiormq reads it from the URL
        allowed = silence_s(float(heartbeat) if heartbeat else None)
        if allowed is not None:
            self.kwargs["transport_factory"] = SilenceWatch(allowed)

    async def connect(self, timeout: Any = None) -> None:
        """The first connect. If it fails or is cancelled, the connection is closed: aio-pika
        would otherwise keep the robust connection's reconnect loop running, and that loop
        swallows cancellation, so whoever gave up (a gateway whose start failed) could not
        exit (`asyncio.run` waits for the loop forever)."""
        try:
            await super().connect(timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.close()
            raise

    @property
    def url(self) -> URL:
        """The node of this connection attempt; the next attempt gets the next node."""
        self._current = self._turn % len(self._nodes)
        self._turn += 1
        return self._nodes[self._current]

    @url.setter
    def url(self, value: URL) -> None:
        # aio-pika assigns it at construction (and when a secret is updated): keep the nodes.
        if value.password != self._nodes[self._current].password:
            self._nodes = [node.with_password(value.password) for node in self._nodes]

    @property
    def node(self) -> URL:
        """The node of the current connection (or of the attempt under way)."""
        return self._nodes[self._current]

    @property
    def reconnect_interval(self) -> float:
        """The pause before the next attempt: the configured one, +-50 %."""
        return jittered(self._interval)

    @reconnect_interval.setter
    def reconnect_interval(self, value: float) -> None:
        self._interval = value

    def __str__(self) -> str:
        return _masked(self.node)


async def connect_cluster(amqp_url: str, **kwargs: Any) -> AbstractRobustConnection:
    """A robust connection to the first node that answers, moving between nodes after."""
    nodes = node_urls(amqp_url)
    kwargs.setdefault("reconnect_interval", RECONNECT_INTERVAL_S)
    kwargs.setdefault("timeout", CONNECT_TIMEOUT_S)
    last: BaseException | None = None
    for first in range(len(nodes)):
        try:
            connection: AbstractRobustConnection = await aio_pika.connect_robust(
                nodes[first], nodes=nodes, first=first, connection_class=ClusterConnection,
                **kwargs)
            return connection
        except (OSError, aio_pika.exceptions.AMQPError, TimeoutError) as exc:
            last = exc
    assert last is not None
    raise last
