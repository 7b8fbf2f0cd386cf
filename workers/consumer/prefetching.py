"""The prefetch a consumer runs at (SPEC: worker semantics, runtime prefetch): a fixed value or
`auto`, remembered in the consumer's slot so a replacement keeps it, changed live by a control
command (re-subscribing under the new limit: `workers.consumer.subscription`), and under `auto`
reviewed every AUTO_REVIEW_S from what the consumer measures (`workers.consumer.autoprefetch`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from protocol import SetPrefetch
from workers.consumer.autoprefetch import AutoPrefetch
from workers.consumer.state import ConsumerSetup
from workers.consumer.subscription import Subscription

log = logging.getLogger("rpcfleet.worker")

AUTO_REVIEW_S = 2.0  # how often prefetch=auto reconsiders its value
WORTH_MOVING = 0.25  # re-subscribing costs a drain: auto moves only for a change above 25 %

Spawn = Callable[[Coroutine[Any, Any, None]], None]


class Prefetching:
    def __init__(self, setup: ConsumerSetup, measure: AutoPrefetch, *, spawn: Spawn,
                 beat: Callable[[], Awaitable[None]],
                 round_trip: Callable[[], Awaitable[None]]) -> None:
        self.setup = setup
        self.measure = measure
        self._spawn = spawn
        self._beat = beat  # the fleet hears each change at once
        self._round_trip = round_trip  # one broker round trip measured, for auto
        self.subscription: Subscription | None = None  # once subscribed (the runtime's _serve)
        self._reviewing = False  # auto's loop is running
        stored, auto = setup.slots.prefetch(setup.slot)
        if stored:  # a replacement keeps its slot's value
            self.value, self.auto = stored, auto
        elif auto:  # the pool was set to auto before this slot ever ran
            self.auto, self.value = True, self.floor
        else:
            self.auto = setup.settings.prefetch == "auto"
            # auto starts cautious: one message per handler slot, or two batches
            self.value = self.floor if self.auto else int(setup.settings.prefetch)

    @property
    def floor(self) -> int:
        """The least prefetch auto holds: one delivery per handler slot (`concurrency`: fewer
        would leave slots idle until 20 handler samples were measured, minutes of long
        handlers). A batch never holds more deliveries than the prefetch, so a pool with
        batched methods holds two of its largest batch: one running, the next gathering
        (`./run bench batching`: 246 req/s at 64 vs 231 at 32 for batches of 32)."""
        largest = max((h.batch or 0 for h in self.setup.pool.handlers.values()), default=0)
        return max(self.setup.settings.concurrency, 2 * largest)

    def started(self, subscription: Subscription) -> None:
        """Subscribed at `value`: remember it, and review it from now on under auto."""
        self.subscription = subscription
        self.remember()
        self._review()

    async def apply(self, command: SetPrefetch, pool_wide: bool = False) -> None:
        """A command to this consumer, or (`pool_wide`) to its pool, which the host's other
        slots take too: a slot whose process is being replaced now, or reconnecting, hears
        nothing itself, and its replacement starts from its slot's value (SPEC: a replaced
        process keeps its slot's value; the pool's is the one set last)."""
        if pool_wide:
            self.setup.slots.set_pool_prefetch(
                None if command.prefetch == "auto" else command.prefetch,
                auto=command.prefetch == "auto")
        if command.prefetch == "auto":
            self.auto = True
            self._review()
            self.remember()
            await self._beat()
            return
        self.auto = False
        await self.set(command.prefetch)

    async def set(self, value: int) -> None:
        """Subscribe again under `value`; a command heard before the subscription started (its
        control queue listens first) is the value it starts with. The new value is announced at
        once (SPEC: visible within 2 s), its beat saying `resubscribing` until what the consumer
        held under the old one has finished and it consumes under the new one; a second beat
        says so."""
        self.value = value
        self.remember()
        if self.subscription is None or not await self.subscription.change(
                value, announce=self._beat):
            await self._beat()
            return
        log.info("prefetch of %s is now %s", self.setup.worker_id, self.value)  # the latest
        await self._beat()

    def remember(self) -> None:
        self.setup.slots.set_prefetch(self.setup.slot, self.value, self.auto)

    def _review(self) -> None:
        """Under auto, once subscribed: the review loop, one at a time."""
        if self.auto and self.subscription is not None and not self._reviewing:
            self._reviewing = True
            self._spawn(self._auto_loop())

    async def _auto_loop(self) -> None:
        try:
            while self.auto:
                await asyncio.sleep(AUTO_REVIEW_S)
                await self._round_trip()
                wanted = self.measure.suggest()
                if wanted:
                    wanted = max(wanted, self.floor)
                if self.auto and wanted and abs(wanted - self.value) > WORTH_MOVING * self.value:
                    await self.set(wanted)
        finally:
            self._reviewing = False
