"""One expiration rule for every request message: a gateway's publish, a worker's retry copy and
a dead letter's replay all derive the AMQP `expiration` from the deadline with it."""

from __future__ import annotations

from protocol import names
from protocol.requests import Request, expiration_ms, start_by


def test_the_expiration_is_the_time_left_to_the_deadline() -> None:
    assert expiration_ms(10_500, now_ms=10_000) == 500


def test_no_deadline_means_no_expiration() -> None:
    assert expiration_ms(None, now_ms=10_000) is None


def test_a_deadline_reached_or_past_still_publishes_with_one_millisecond() -> None:
    """0 could be dropped by the broker at once; the consumer's deadline check decides."""
    assert expiration_ms(10_000, now_ms=10_000) == 1
    assert expiration_ms(9_000, now_ms=10_000) == 1


def test_a_far_deadline_is_capped_at_what_amqp_accepts() -> None:
    assert expiration_ms(10**15, now_ms=0) == names.MAX_EXPIRATION_MS == 2**32 - 1


def test_a_request_uses_the_same_rule() -> None:
    request = Request(job_id="j", method="echo", reply_to=None, deadline_ms=10_250)
    assert request.expiration_ms(10_000) == 250


def test_a_jobs_copy_after_its_first_delivery_has_no_deadline_to_start_by() -> None:
    """A job's timeout bounds its wait in the queue, which its first delivery ended: its retry
    copy (attempt 2 on) carries no expiration; a sync call's keeps its caller's deadline."""
    job = "rpcfleet.replies.s1"
    assert start_by(10_000, attempt=1, reply_to=job) == 10_000
    assert start_by(10_000, attempt=2, reply_to=job) is None
    assert start_by(10_000, attempt=2, reply_to=names.DIRECT_REPLY_TO) == 10_000
