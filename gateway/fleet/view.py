"""The live fleet: worker entries from beats, dropped after three missed beats. A worker that
says it is leaving (a graceful stop, a retirement: SPEC 1.2) stops counting at once, and is
listed apart, `"leaving": true`, until its beats stop.

Whether a pool can serve a call now (SPEC 1.1, knowing a pool is empty) combines the beats with
the broker's consumer count, polled by `gateway.fleet.queues`: a pool is empty when none of its
workers beats, when all of them left, or when the broker has shown no consumer on its queue for
`ZERO_GRACE_S` while no worker says it is restoring its subscription. A re-subscription (a
prefetch change takes milliseconds; a channel the broker closed, a second or two) therefore never
makes a pool look empty.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.fleet.demand import PoolLoad, desired_consumers
from protocol import MethodDoc, Processes, WorkerEntry, names

MISSED_BEATS = 3  # one lost beat is noise; three is a worker that is gone
ZERO_GRACE_S = 1.0  # a count of 0 seen by two polls this far apart: not a re-subscription blip
RESTORE_GRACE_S = 10.0  # a worker restoring its subscription keeps its pool "serving" this long
ROUTES_EVERY_S = 1.0  # how stale the routes of clashing methods may be
RATE_SPAN_S = 10.0  # a worker's completion rate is smoothed over about this long


@dataclass
class _Seen:
    entry: WorkerEntry
    at: float  # monotonic
    idle_since: float | None = None  # when its beats started saying "not consuming"
    rate: float = 0.0  # requests it completes per second (smoothed over its beats)


class FleetView:
    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}
        self._leaving: dict[str, _Seen] = {}  # consumers draining to exit: listed, not counted
        self._method_pool: dict[str, str] = {}  # every method ever announced, kept after death
        self._pool_methods: dict[str, list[str]] = {}
        self._pool_docs: dict[str, dict[str, MethodDoc]] = {}  # the latest a pool announced
        self._pool_max_priority: dict[str, int] = {}  # its queue's x-max-priority, once told
        self._zero_since: dict[str, float] = {}  # pools whose queue the broker shows unconsumed
        self._first_pools: dict[str, str] = {}  # a clashing method -> the pool that had it
        self._routed_at = float("-inf")
        # Pools taken out of service (their queue deleted), with the pids their workers had.
        self._retired: dict[str, set[int]] = {}
        self._listening_since: float | None = None  # monotonic: when beats began to come here

    def listening(self) -> None:
        """The events queue is consumed: from now on every live worker's beat is heard."""
        if self._listening_since is None:
            self._listening_since = time.monotonic()

    def heard_every_worker(self, beat_interval: float) -> bool:
        """Whether this process has listened long enough (MISSED_BEATS beats of the fleet's
        interval) that a method no beat announced has no live worker anywhere."""
        since = self._listening_since
        return since is not None and time.monotonic() - since > MISSED_BEATS * beat_interval

    def update(self, entry: WorkerEntry) -> bool:
        """Record a beat; True when it comes from a consumer not seen before: a new process, or
        one that subscribed again after losing its channel or connection (a new session)."""
        previous = self._seen.get(entry.id)
        now = time.monotonic()
        if entry.leaving:
            if previous is not None and previous.entry.pid == entry.pid:
                del self._seen[entry.id]  # not a newer process in the same slot
            self._leaving[entry.id] = _Seen(entry, now)
            return False
        gone = self._leaving.get(entry.id)
        if gone is not None and gone.entry.pid == entry.pid:
            if self._alive(gone, now):
                return False  # a process never stops leaving: a beat saying otherwise is stale
            del self._leaving[entry.id]  # it exited long ago: a new process reusing its pid
        idle_since = None
        if not entry.consuming:
            kept = previous.idle_since if previous is not None else None
            idle_since = kept if kept is not None else now
        self._seen[entry.id] = _Seen(entry, now, idle_since, _rate(previous, entry, now))
        for method in entry.methods:
            # Two live pools announcing one method (SPEC 1.2: flag it, keep the first): the
            # method stays with the pool that had it while that one has live workers and
            # still announces it.
            holder = self._method_pool.get(method)
            if (holder is None or holder == entry.pool or not self._pool_alive(holder, now)
                    or method not in self._pool_methods.get(holder, ())):
                self._method_pool[method] = entry.pool
        self._pool_methods[entry.pool] = entry.methods
        retired = self._retired.get(entry.pool)
        if retired is not None and entry.consuming and entry.pid not in retired:
            del self._retired[entry.pool]  # served again: a host started it anew
        if entry.docs is not None:
            self._pool_docs[entry.pool] = entry.docs
        if entry.queue_max_priority is not None:
            self._pool_max_priority[entry.pool] = entry.queue_max_priority
        elif entry.processes is not None:  # a worker since 1.2 saying its queue has no levels
            self._pool_max_priority.pop(entry.pool, None)
        return (previous is None or previous.entry.pid != entry.pid
                or previous.entry.session != entry.session)

    def _alive(self, seen: _Seen, now: float) -> bool:
        return now - seen.at <= MISSED_BEATS * seen.entry.beat_interval

    def _pool_alive(self, pool: str, now: float) -> bool:
        return any(s.entry.pool == pool and self._alive(s, now) for s in self._seen.values())

    def clashes(self) -> dict[str, list[str]]:
        """Methods that live workers of more than one pool announce, with those pools (the
        one calls are counted against first): each such call runs in every one of them."""
        pools: dict[str, set[str]] = {}
        for entry in self.workers():
            for method in entry.methods:
                pools.setdefault(method, set()).add(entry.pool)
        return {method: sorted(found, key=lambda p: (p != self._method_pool.get(method), p))
                for method, found in sorted(pools.items()) if len(found) > 1}

    def workers(self) -> list[WorkerEntry]:
        now = time.monotonic()
        for worker_id in [k for k, s in self._seen.items() if not self._alive(s, now)]:
            del self._seen[worker_id]
        return sorted((s.entry for s in self._seen.values()), key=lambda e: e.id)

    def listing(self) -> list[WorkerEntry]:
        """What /v1/workers shows: the live workers and those leaving, until their beats stop."""
        now = time.monotonic()
        for worker_id in [k for k, s in self._leaving.items() if not self._alive(s, now)]:
            del self._leaving[worker_id]
        return sorted([*self.workers(), *(s.entry for s in self._leaving.values())],
                      key=lambda e: (e.id, e.leaving))

    def worker(self, worker_id: str) -> WorkerEntry | None:
        return next((e for e in self.workers() if e.id == worker_id), None)

    def route(self, method: str) -> tuple[str, str]:
        """Where a request for `method` is published, as (exchange, routing key): through the
        requests exchange by its name; when two live pools announce it (SPEC 1.2: keep routing
        to the first), straight to the first pool's queue, so that only that pool runs it."""
        now = time.monotonic()
        if now - self._routed_at > ROUTES_EVERY_S:  # a scan of the fleet, once a second at most
            self._routed_at = now
            self._first_pools = {m: pools[0] for m, pools in self.clashes().items()}
        first = self._first_pools.get(method)
        if first is not None:
            return "", names.pool_queue(first)
        return names.EXCHANGE, method

    def pool_of(self, method: str) -> str | None:
        """The pool serving `method`; None when no pool announced it, or when its pool was
        retired (SPEC 1.2: its bindings are gone, so a call of it is an unknown method, not one
        that waits for workers) until a worker serves that pool again."""
        pool = self._method_pool.get(method)
        return None if pool is None or pool in self._retired else pool

    def queue_max_priority(self, method: str) -> int | None:
        """The x-max-priority of the queue of the pool serving `method`, as its workers last
        announced it (SPEC 1.2, priorities on the wire); None when not told (quorum queues,
        workers before 1.2, a method no pool announced)."""
        pool = self._method_pool.get(method)
        return self._pool_max_priority.get(pool) if pool is not None else None

    def observe_consumers(self, pool: str, consumers: int) -> None:
        """The broker's live consumer count of the pool's queue."""
        if consumers > 0:
            self._zero_since.pop(pool, None)
        else:
            self._zero_since.setdefault(pool, time.monotonic())

    def has_live_worker(self, pool: str) -> bool:
        now = time.monotonic()
        live = [s for s in self._seen.values() if s.entry.pool == pool and self._alive(s, now)]
        restoring = any(s.idle_since is not None and now - s.idle_since < RESTORE_GRACE_S
                        for s in live)
        serving = [s for s in live if s.entry.consuming]
        if not serving and not restoring:
            return False
        # A consumer changing its prefetch is cancelled at the broker until what it holds has
        # finished (SPEC): the pool's requests wait for it, they are not refused.
        resubscribing = any(s.entry.resubscribing for s in serving)
        zero_since = self._zero_since.get(pool)
        broker_empty = zero_since is not None and now - zero_since >= ZERO_GRACE_S
        return restoring or resubscribing or not broker_empty

    def hosts(self) -> dict[tuple[str, str], Processes]:
        """Per (pool, host), the host's process range and consumers, as its beats say (1.2)."""
        found: dict[tuple[str, str], Processes] = {}
        for entry in self.workers():
            if entry.processes is not None:
                found.setdefault((entry.pool, entry.host), entry.processes)
        return found

    def desired_consumers(self, pool: str, backlog: int | None) -> int:
        """The consumers `pool` needs now, every host together (gateway.fleet.demand)."""
        return desired_consumers(self.load(pool, backlog))

    def load(self, pool: str, backlog: int | None) -> PoolLoad:
        """What `gateway.fleet.demand` needs of a pool: its consumers, how busy, how fast."""
        live = [s for s in self._seen.values()
                if s.entry.pool == pool and self._alive(s, time.monotonic())]
        busy = sum(min(s.entry.in_flight, s.entry.concurrency) / s.entry.concurrency
                   for s in live)
        return PoolLoad(consumers=len(live), busy=busy, throughput=sum(s.rate for s in live),
                        backlog=backlog)

    def retire(self, pool: str) -> None:
        """The pool's queue is gone (SPEC 1.2): listed as retired until a new worker serves it
        (a late beat of one that left does not count)."""
        self._retired[pool] = {s.entry.pid for s in [*self._seen.values(), *self._leaving.values()]
                               if s.entry.pool == pool}
        for worker_id in [k for k, s in self._seen.items() if s.entry.pool == pool]:
            del self._seen[worker_id]
        self._pool_max_priority.pop(pool, None)  # a queue declared anew says its own

    def is_retired(self, pool: str) -> bool:
        return pool in self._retired

    def pools(self) -> dict[str, list[str]]:
        """Every pool ever announced, with its methods."""
        return dict(self._pool_methods)

    def docs(self) -> dict[str, dict[str, MethodDoc]]:
        """Per pool, per method, what its workers announced for the API docs."""
        return dict(self._pool_docs)


def _rate(previous: _Seen | None, entry: WorkerEntry, now: float) -> float:
    """The worker's completions per second, an average over its beats weighted by their spans
    (a beat sent at once after a change covers a short span, and moves the rate little)."""
    if previous is None or previous.entry.pid != entry.pid:
        return 0.0
    span = now - previous.at
    done = entry.processed - previous.entry.processed
    if span <= 0 or done < 0:
        return previous.rate
    weight = min(span / RATE_SPAN_S, 1.0)
    return previous.rate + weight * (done / span - previous.rate)
