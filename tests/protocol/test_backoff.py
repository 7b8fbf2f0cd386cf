"""The one backoff schedule (`protocol.backoff`): every retry in rpcfleet waits by it (the broker
link's reconnects, a reply's re-publish, a confirmed job's mark, a callback's next attempt, a
consumer whose cache loader failed)."""

from __future__ import annotations

from dataclasses import dataclass

from protocol import backoff


def test_the_ceiling_doubles_from_base_after_each_failure_up_to_the_cap() -> None:
    assert [backoff.ceiling(n, 0.5, 3.0) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.ceiling(10**6, 0.5, 3.0) == 3.0  # no overflow however many failures
    assert backoff.ceiling(0, 0.5, 3.0) == 0.5  # before any failure: the base


def test_a_wait_is_a_random_share_of_the_ceiling() -> None:
    assert backoff.delay(3, 1.0, 60.0, draw=lambda: 0.0) == 0.0
    assert backoff.delay(3, 1.0, 60.0, draw=lambda: 0.5) == 2.0
    waits = [backoff.delay(4, 1.0, 60.0) for _ in range(2000)]
    assert all(0 <= w <= 8.0 for w in waits) and max(waits) > 7 and min(waits) < 1


@dataclass
class _State:  # what a retry loop passes its wait (tenacity's RetryCallState)
    attempt_number: int


def test_a_retry_loop_waits_by_the_same_schedule() -> None:
    wait = backoff.wait(0.2, 5.0)
    assert all(0 <= wait(_State(n)) <= backoff.ceiling(n, 0.2, 5.0) for n in range(1, 20))
