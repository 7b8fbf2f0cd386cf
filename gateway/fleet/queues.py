"""Depth and consumers of each pool queue, and its dead letters, polled with passive declares on a
plain channel (a robust channel caches DeclareOk and would show stale counts)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from aio_pika.abc import AbstractChannel

from gateway.amqp.link import BrokerLink
from gateway.fleet.view import FleetView
from protocol import names
from transport import background

log = logging.getLogger("rpcfleet.gateway")

# Calls learn that a pool lost its last consumer from this poll (SPEC 1.1: within about 1 s);
# two passive declares per pool per poll cost the broker little.
POLL_S = 0.5


@dataclass(frozen=True)
class QueueCounts:
    messages: int
    consumers: int
    dead_letters: int  # messages in rpcfleet.dead.{pool}


class QueueStats:
    def __init__(self, link: BrokerLink, view: FleetView) -> None:
        self.link = link
        self.view = view
        self._counts: dict[str, QueueCounts] = {}
        self._task: asyncio.Task[None] | None = None

    def snapshot(self) -> dict[str, QueueCounts]:
        return dict(self._counts)

    async def __aenter__(self) -> QueueStats:
        self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await background.stop(self._task)

    async def _poll(self) -> None:
        await self.link.connected.wait()
        # One channel of the link's, reopened by aio-pika after a missing queue closed it (a
        # 404 on a passive declare): its raw channel is fetched again, never a new one opened
        # (each left behind would be reopened too: +2 channels a second, issue 22).
        robust: AbstractChannel | None = None
        while True:
            for pool in self.view.pools():
                try:
                    if robust is None or robust.is_closed:
                        assert self.link.connection is not None
                        if robust is not None:
                            with contextlib.suppress(Exception):
                                await robust.close()
                        robust = await self.link.connection.channel(publisher_confirms=False)
                    channel = await robust.get_underlay_channel()
                    if self.view.is_retired(pool):  # its queue is gone; its dead letters stay
                        dead = await channel.queue_declare(names.dead_queue(pool), passive=True)
                        self._counts[pool] = QueueCounts(0, 0, int(dead.message_count or 0))
                        continue
                    ok = await channel.queue_declare(names.pool_queue(pool), passive=True)
                    dead = await channel.queue_declare(names.dead_queue(pool), passive=True)
                    self._counts[pool] = QueueCounts(int(ok.message_count or 0),
                                                     int(ok.consumer_count or 0),
                                                     int(dead.message_count or 0))
                    self.view.observe_consumers(pool, int(ok.consumer_count or 0))
                except Exception as exc:  # a missing queue closes the raw channel
                    log.debug("queue stats of %s unavailable: %s", pool, exc)
                    await _reopened(robust)
            await asyncio.sleep(POLL_S)


async def _reopened(robust: AbstractChannel | None, wait_s: float = 2.0) -> None:
    """Until aio-pika has reopened the robust channel the broker closed (milliseconds), so the
    next declare goes on a live one; a connection that is gone is the next poll's business."""
    if robust is None:
        return
    with contextlib.suppress(Exception):  # the timeout included
        async with asyncio.timeout(wait_s):
            while True:
                raw = await robust.get_underlay_channel()
                if not raw.is_closed:
                    return
                await asyncio.sleep(0.02)
