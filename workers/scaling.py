"""When an elastic pool adds or retires a consumer (SPEC 1.2, elastic pools): a pure policy, fed
by the supervisor's samples of what its consumers wrote in the slot table (workers/slots.py).

The signal, and why:

- **Up**: requests wait in the pool's queue (the backlog one consumer reads every second) while
  every consumer holds work. Either alone misleads: a backlog with idle consumers is prefetch
  or a consumer about to take it; busy consumers with an empty queue are exactly sized. Both must
  hold for most of the last `SATURATED_S` (80 % of the samples, every 0.2 s), not at one instant,
  so a burst that one consumer absorbs in a second forks nothing. Then one more consumer, at most
  one every `UP_EVERY_S` (a fork serves in about a second; 3 s lets the last one show its effect
  before the next decision).
- **Down**: over the last `idle` seconds (RPCFLEET_SCALE_IDLE, with no change in that time), the
  consumers were busy on average at most `RETIRE_SHARE` of what one fewer would offer: one fewer
  would have done with room to spare. The margin is the anti-flapping rule: after a retirement
  the remaining consumers run at most 75 % busy on that load, below where the up rule (all busy
  most of the time, with a backlog) starts; and the window restarts after every change, so a
  decision is never taken on samples from before the last one.
- **The range itself**: fewer than MIN forks at once (raising MIN); more than MAX retires at once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

SATURATED_S = 1.5  # the span over which "every consumer busy, work waiting" must hold
SATURATED_SHARE = 0.8  # of the samples in that span
UP_EVERY_S = 3.0  # one more consumer at most this often (SPEC)
RETIRE_SHARE = 0.75  # retire when the mean busy count is at most this share of (now - 1)


@dataclass(frozen=True)
class Sample:
    at: float  # monotonic seconds
    live: int  # consumers running (none being retired)
    busy: int  # of those, holding work
    backlog: int | None  # ready messages in the queue (None: not known lately)

    @property
    def saturated(self) -> bool:
        return self.live > 0 and self.busy >= self.live and bool(self.backlog)


@dataclass(frozen=True)
class Decision:
    change: int  # consumers to add (> 0) or retire (< 0)
    why: str


class Scaler:
    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self._samples: deque[Sample] = deque()
        self._changed_at: float | None = None  # the last decision (or the start)
        self._up_at = float("-inf")

    def observe(self, sample: Sample) -> None:
        if self._changed_at is None:
            self._changed_at = sample.at
        self._samples.append(sample)
        keep = max(self.idle_s, SATURATED_S) + 1.0
        while self._samples and self._samples[0].at < sample.at - keep:
            self._samples.popleft()

    def decide(self, at: float, live: int, least: int, most: int) -> Decision | None:
        """What to do now with `live` consumers in the range least..most; None: nothing."""
        if live < least:
            return self._changed(at, Decision(least - live, f"below the minimum of {least}"))
        if live > most:
            return self._changed(at, Decision(most - live, f"above the maximum of {most}"))
        if live < most and at - self._up_at >= UP_EVERY_S and self._saturated(at):
            latest = self._samples[-1]
            self._up_at = at
            return self._changed(at, Decision(1, f"{latest.backlog} requests waiting and all "
                                                  f"{live} consumers busy for {SATURATED_S} s"))
        if live > least:
            mean = self._mean_busy(at)
            if mean is not None and mean <= RETIRE_SHARE * (live - 1):
                return self._changed(at, Decision(-1, f"{mean:.2f} consumers busy on average "
                                                      f"over {self.idle_s:g} s: {live - 1} do"))
        return None

    def _changed(self, at: float, decision: Decision) -> Decision:
        self._changed_at = at
        return decision

    def _saturated(self, at: float) -> bool:
        recent = [s for s in self._samples if s.at > at - SATURATED_S]
        # The span must be covered (the first samples after a start do not make a trend).
        if not recent or recent[0].at > at - SATURATED_S + 0.5 or not recent[-1].backlog:
            return False
        return sum(s.saturated for s in recent) >= SATURATED_SHARE * len(recent)

    def _mean_busy(self, at: float) -> float | None:
        """The mean busy count over the last `idle_s`, when that span has no change in it."""
        if self._changed_at is None or at - self._changed_at < self.idle_s:
            return None
        window = [s.busy for s in self._samples if s.at >= at - self.idle_s]
        return sum(window) / len(window) if window else None
