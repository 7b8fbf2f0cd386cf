"""Pools being taken out of service through this gateway process (`DELETE /v1/pools/{pool}`):
each retirement runs as a task of this process's lifespan (transport.retire does the steps), and
its state is what `GET /v1/pools` shows while it runs. Once a pool's queue is deleted every
gateway process hears `pool.{pool}.retired` on rpcfleet.events and marks the pool retired in its
fleet view."""

from __future__ import annotations

import logging

from aio_pika.abc import AbstractConnection

from gateway.amqp.link import BrokerLink
from gateway.fleet.view import FleetView
from protocol import names
from protocol.fleet import PoolRetired, RetirePool
from transport.background import Background
from transport.retire import Retirement, retire_pool, unbind_pool

log = logging.getLogger("rpcfleet.gateway")

RETIRE_TIMEOUT_S = 3600.0  # a drain serves what is queued: allow an hour before giving up


class Retirements:
    def __init__(self, link: BrokerLink, view: FleetView) -> None:
        self.link = link
        self.view = view
        self.running: dict[str, Retirement] = {}
        self._tasks = Background()

    def under_way(self, pool: str) -> Retirement | None:
        found = self.running.get(pool)
        return found if found is not None and not found.ended else None

    async def start(self, pool: str, methods: list[str], drain: bool) -> Retirement:
        """Unbind the pool (a call of its methods is refused from the moment this returns),
        then go on in the background."""
        connection = self.link.connection
        if connection is None:
            raise ConnectionError("the broker is unreachable")
        await unbind_pool(connection, pool, methods)
        retirement = Retirement(pool, drain)
        self.running[pool] = retirement
        self._tasks.start(self._run(connection, retirement))
        return retirement

    async def _run(self, connection: AbstractConnection, retirement: Retirement) -> None:
        async def tell() -> None:
            if not await self.link.send_control(RetirePool(drain=retirement.drain),
                                                names.control_pool_key(retirement.pool),
                                                confirm=True):
                raise ConnectionError("the broker is unreachable")

        try:
            await retire_pool(connection, retirement, tell, RETIRE_TIMEOUT_S)
        except Exception as exc:  # its state says so; the bindings stay gone
            log.error("retiring pool %s failed: %s", retirement.pool, exc)
            return
        self.view.retire(retirement.pool)
        await self.link.send_event(PoolRetired(pool=retirement.pool, drained=retirement.drain,
                                               dead_lettered=retirement.dead_lettered),
                                   names.pool_retired_key(retirement.pool))

    async def __aenter__(self) -> Retirements:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._tasks.stop()
