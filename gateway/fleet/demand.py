"""How many consumers a pool needs now, from what a gateway sees: the `desired consumers` gauge a
KEDA or HPA rule reads to add worker hosts (docs/keda-scaledobject.yaml; SPEC 1.2, elastic
pools). Pure arithmetic; `gateway.fleet.view` gathers the inputs from the beats and the queue
poll.

- The consumers working now carry the current arrival rate (Little's law: busy = rate x time):
  `busy` is the sum over the pool's consumers of what they hold, each capped at its concurrency
  and counted in consumers (a consumer running 2 of its 4 handlers is half busy).
- A backlog needs more: enough to clear it within `DRAIN_TARGET_S` at the rate one consumer
  completes (the pool's throughput, from the beats' `processed` counters, over `busy`).
- With a backlog and no throughput to measure (just started, or stuck): one more than now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DRAIN_TARGET_S = 10.0  # a backlog should be gone within this


@dataclass(frozen=True)
class PoolLoad:
    consumers: int  # live consumers of the pool, every host
    busy: float  # consumer-equivalents holding work now
    throughput: float  # requests completed per second, the pool's consumers together
    backlog: int | None  # ready messages in the pool queue (None: not polled yet)


def desired_consumers(load: PoolLoad) -> int:
    backlog = load.backlog or 0
    working = math.ceil(load.busy - 1e-9)
    if not backlog:
        return max(working, 0)
    if load.throughput <= 0 or load.busy <= 0:
        return max(load.consumers + 1, working)
    per_consumer = load.throughput / load.busy
    return math.ceil(load.busy + backlog / (per_consumer * DRAIN_TARGET_S) - 1e-9)
