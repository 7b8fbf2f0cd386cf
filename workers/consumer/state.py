"""What one consumer process knows about itself: identity, counters, cancels, running jobs."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from protocol import ErrorCode
from workers.consumer.outcome import Stopper
from workers.memory import CacheInfo
from workers.pool import Pool
from workers.settings import WorkerSettings
from workers.slots import SlotTable

CANCELS_REMEMBERED = 10_000  # cancelled job ids kept per consumer; the oldest are long gone


@dataclass
class ConsumerSetup:
    """Everything a consumer inherits from its supervisor at fork time."""

    pool: Pool
    cache: Any
    cache_info: CacheInfo
    settings: WorkerSettings
    slot: int
    slots: SlotTable
    host: str

    @property
    def worker_id(self) -> str:
        from protocol.names import worker_id

        return worker_id(self.host, self.pool.name, self.slot)


@dataclass
class Counters:
    processed: int = 0
    failed: int = 0


@dataclass
class Cancels:
    """Cancelled job ids, and the stop signals of the jobs running here."""

    ids: OrderedDict[str, None] = field(default_factory=OrderedDict)
    running: dict[str, Stopper] = field(default_factory=dict)

    def add(self, job_id: str, stop_running: bool = True) -> bool:
        """Remember a cancel; True when the job was running here and is being stopped
        (`stop_running=False`: a running one finishes, only a queued one is skipped)."""
        self.ids[job_id] = None
        self.ids.move_to_end(job_id)
        while len(self.ids) > CANCELS_REMEMBERED:
            self.ids.popitem(last=False)
        stopper = self.running.get(job_id) if stop_running else None
        return stopper is not None and stopper.stop(ErrorCode.CANCELLED)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self.ids
