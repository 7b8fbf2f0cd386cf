"""`prefetch=auto`: size the prefetch from what the consumer measures.

A consumer at prefetch p starves when its buffer runs dry: it then waits one broker round trip
(ack out, next delivery in) doing nothing. With handler time H and round trip R, keeping
c handlers busy needs about c * (1 + R / H) messages in hand; we add headroom for jitter and clamp.
Long handlers get prefetch = concurrency (fair sharing between consumers); short ones get enough
to hide the round trip.
"""

from __future__ import annotations

import math

AUTO_MIN = 1
AUTO_MAX = 256  # beyond this a consumer hoards work other consumers could do
HEADROOM = 2.0  # round trips vary by 2x on a loaded host: cover the slow ones
SMOOTHING = 0.2  # EWMA weight of a new sample: settles within ~10 messages
NEGLIGIBLE = 0.1  # idle share of a cycle below which another held message buys nothing
MIN_SAMPLES = 20  # decide on measurements, not the first message


class AutoPrefetch:
    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.handler_s: float | None = None
        self.round_trip_s: float | None = None
        self.samples = 0

    def observe_handler(self, seconds: float) -> None:
        self.handler_s = _ewma(self.handler_s, seconds)
        self.samples += 1

    def observe_round_trip(self, seconds: float) -> None:
        self.round_trip_s = _ewma(self.round_trip_s, seconds)

    def suggest(self) -> int | None:
        if self.samples < MIN_SAMPLES or self.handler_s is None or self.round_trip_s is None:
            return None
        handler = max(self.handler_s, 1e-5)
        wanted = self.concurrency * (1 + HEADROOM * self.round_trip_s / handler)
        # A round trip under a tenth of a handler is not worth a message held from others.
        return max(AUTO_MIN, min(AUTO_MAX, math.ceil(wanted - NEGLIGIBLE)))


def _ewma(previous: float | None, sample: float) -> float:
    return sample if previous is None else previous + SMOOTHING * (sample - previous)
