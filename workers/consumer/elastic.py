"""A consumer's part in an elastic pool (SPEC 1.2): the supervisor holds no broker connection, so
its consumers tell it what they see, through the slot table (workers/slots.py):

- what each consumer holds now (written as deliveries come and go: two integer stores);
- the pool queue's backlog (ready messages), read every `BACKLOG_EVERY_S` by one consumer of the
  host only (the lowest serving slot), with a passive declare, and only while the range is
  elastic: a fixed pool costs the broker nothing;
- a `set_processes` command, written as the host's range (bounded by RPCFLEET_MAX_PROCESSES);

and each beat carries the host's range, the consumers running and why one is held back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aio_pika.abc import AbstractChannel

from protocol import Processes, SetProcesses
from protocol.clock import now_ms, rfc3339
from protocol.fleet import ScalingDecision
from workers.slots import SlotTable

log = logging.getLogger("rpcfleet.worker")

BACKLOG_EVERY_S = 1.0


class ElasticReport:
    def __init__(self, slots: SlotTable, slot: int, queue: str, max_processes: int) -> None:
        self.slots = slots
        self.slot = slot
        self.queue = queue
        self.max_processes = max_processes

    def holding(self, count: int) -> None:
        self.slots.set_in_flight(self.slot, count)

    def apply(self, command: SetProcesses) -> None:
        least, most = command.min, command.max
        if most > self.max_processes:
            log.warning("set_processes %s..%s: this host allows at most %s consumers "
                        "(RPCFLEET_MAX_PROCESSES); using %s..%s", least, most,
                        self.max_processes, min(least, self.max_processes), self.max_processes)
            least, most = min(least, self.max_processes), self.max_processes
        if (least, most) != self.slots.process_range():
            log.info("processes of this host's pool: %s..%s", least, most)
        self.slots.set_process_range(least, most)

    def processes(self) -> Processes:
        least, most = self.slots.process_range()
        added, retired, last = self.slots.decisions()
        return Processes(min=least, max=most, now=self.slots.running_now(),
                         held_back=self.slots.held_back(), added=added, retired=retired,
                         last=ScalingDecision(at=rfc3339(last[0]), change=last[1], why=last[2])
                         if last else None)

    async def watch_backlog(self, channel: Callable[[], AbstractChannel | None]) -> None:
        """Every second, while the range is elastic and this consumer is its host's reporter:
        the pool queue's ready messages, into the slot table. A failed read is skipped (the
        supervisor treats a backlog older than a few seconds as unknown)."""
        while True:
            await asyncio.sleep(BACKLOG_EVERY_S)
            least, most = self.slots.process_range()
            current = channel()
            if least == most or self.slots.reporter() != self.slot or current is None:
                continue
            try:
                raw = await current.get_underlay_channel()
                declared = await raw.queue_declare(self.queue, passive=True, timeout=2)
            except Exception as exc:  # a channel being restored: the next second tries again
                log.debug("could not read the backlog of %s: %r", self.queue, exc)
                continue
            self.slots.set_backlog(int(declared.message_count or 0), now_ms())
