"""A pool taken out of service on purpose (SPEC 1.2, pools that leave): its bindings go first
(a new call of its methods is answered `unknown_method` at once, nothing more enters its queue),
then what is left in its queue is served (`drain`) or dead-lettered, then the queue is deleted.

With `drain`, the consumers keep serving until the queue is empty, and only then are told to
leave (`RetirePool(drain=True)`: they finish what they hold). Without, they are told at once:
they finish the handlers that run and hand back what they hold but have not started, and once no
consumer is left what the queue holds is dead-lettered, each copy confirmed by the broker before
its original is acked, with the reason `retired` (replayable from `rpcfleet dead`, as any dead
letter). The queue is deleted only unused and empty: a message can never be lost to the delete.
The claims of its methods expire on their own (`x-expires`) once its consumers are gone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractQueue

from protocol import names
from protocol.clock import now_ms
from protocol.dead import dead_letter_headers
from protocol.errors import DeadReason
from transport.copies import send_copy
from transport.publishing import Confirmed
from transport.settling import Decision, settle
from transport.waiting import poll

log = logging.getLogger("rpcfleet.transport")

POLL_S = 0.5


class RetireFailed(Exception):
    """A step did not complete in time; what is done stays done (the bindings stay gone)."""


@dataclass
class Retirement:
    """What a retirement did, and where it is (for `GET /v1/pools` while it runs)."""

    pool: str
    drain: bool
    state: str = "unbound"  # then draining, leaving, dead-lettering, deleted, or failed: ...
    dead_lettered: int = 0

    @property
    def ended(self) -> bool:
        return self.state == "deleted" or self.state.startswith("failed")


async def unbind_pool(connection: AbstractConnection, pool: str, methods: list[str]) -> None:
    """The first step, done before a retirement is answered: from here on a call of the pool's
    methods is refused (`unknown_method`), and nothing more enters its queue."""
    channel = await connection.channel()
    try:
        underlay = await channel.get_underlay_channel()
        for method in methods:
            await underlay.queue_unbind(names.pool_queue(pool), names.EXCHANGE, method)
    finally:
        await channel.close()
    log.info("pool %s: unbound from %s", pool, ", ".join(methods))


async def retire_pool(connection: AbstractConnection, retirement: Retirement,
                      tell: Callable[[], Awaitable[object]], timeout: float) -> Retirement:
    """The rest, once `unbind_pool` is done: `tell` sends the consumers their RetirePool."""
    channel = await connection.channel(publisher_confirms=True)
    try:
        queue = await channel.declare_queue(names.pool_queue(retirement.pool), passive=True)
        deadline = time.monotonic() + timeout
        if retirement.drain:
            retirement.state = "draining"
            await _until(channel, retirement.pool, lambda ready, _: ready == 0, deadline,
                         "its queue to be served")
        retirement.state = "leaving"
        await tell()
        await _until(channel, retirement.pool, lambda _, consumers: consumers == 0, deadline,
                     "its consumers to leave")
        retirement.state = "dead-lettering"
        retirement.dead_lettered = await _dead_letter_the_rest(channel, queue, retirement.pool)
        await queue.delete(if_unused=True, if_empty=True)
        retirement.state = "deleted"
        log.info("pool %s retired (%s dead-lettered)", retirement.pool,
                 retirement.dead_lettered)
        return retirement
    except Exception as exc:
        retirement.state = f"failed: {exc}"
        raise
    finally:
        await channel.close()


async def _until(channel: AbstractChannel, pool: str, done: Callable[[int, int], bool],
                 deadline: float, what: str) -> None:
    """Poll the queue (ready messages, consumers) until `done`, or RetireFailed."""
    async def check() -> bool:
        # The raw channel's declare: a robust channel's declare_queue answers from the first
        # declaration of the name (its counts never move).
        underlay = await channel.get_underlay_channel()
        result = await underlay.queue_declare(names.pool_queue(pool), passive=True)
        return done(int(result.message_count or 0), int(result.consumer_count or 0))

    if not await poll(check, max(0.0, deadline - time.monotonic()), POLL_S):
        raise RetireFailed(f"timed out waiting for {what}")


async def _dead_letter_the_rest(channel: AbstractChannel, queue: AbstractQueue,
                                pool: str) -> int:
    """Each message left: a copy to `rpcfleet.dlx` (reason `retired`), confirmed, then the
    original acked."""
    count = 0
    while (message := await queue.get(no_ack=False, fail=False)) is not None:
        headers = dead_letter_headers(message.headers, pool, DeadReason.RETIRED,
                                      "its pool was retired without a drain", now_ms())
        sent = await send_copy(channel, message, exchange=names.DEAD_LETTER_EXCHANGE,
                               routing_key=pool, headers=headers)
        if sent is not Confirmed.ACKED:
            await settle(message, Decision.REQUEUE)
            raise RetireFailed(f"the dead-letter queue of {pool} did not take a message")
        if await settle(message, Decision.ACK):
            count += 1
    return count
