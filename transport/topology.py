"""The exchanges every component declares before it publishes or binds (SPEC: AMQP topology),
from `protocol.names.EXCHANGES`. Idempotent: the same arguments everywhere."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange

from protocol import names


async def declare_exchanges(channel: AbstractChannel) -> dict[str, AbstractExchange]:
    """Declare rpcfleet's exchanges on `channel`; returns them by name."""
    return {name: await channel.declare_exchange(name, aio_pika.ExchangeType(kind), durable=True)
            for name, kind in names.EXCHANGES}
