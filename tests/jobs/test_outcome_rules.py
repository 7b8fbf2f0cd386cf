"""The recorder's decisions, rule by rule (`gateway.jobs.outcomes`): what a job's final state is
for each reply or dead letter that comes back, and what a reply's bookkeeping headers say. The
recorder itself only stores what these decide (tests/jobs/test_jobs.py runs it end to end)."""

from __future__ import annotations

from gateway.jobs.outcomes import from_dead_letter, from_reply, reply_facts, starts_vouched
from protocol import ErrorCode, JobStatus, names, replies


def test_a_success_reply_ends_the_job_succeeded_with_its_result() -> None:
    assert from_reply(replies.encode_success({"n": 1})) == (JobStatus.SUCCEEDED, {"n": 1}, None)


def test_a_cancelled_or_expired_reply_ends_the_job_in_that_state() -> None:
    status, result, error = from_reply(replies.encode_failure(ErrorCode.CANCELLED, "stopped"))
    assert (status, result, error and error.code) == (JobStatus.CANCELLED, None, "cancelled")
    status, _, error = from_reply(replies.encode_failure(ErrorCode.EXPIRED, "too late"))
    assert (status, error and error.message) == (JobStatus.EXPIRED, "too late")


def test_any_other_failure_fails_the_job_with_the_workers_error() -> None:
    status, _, error = from_reply(replies.encode_failure(ErrorCode.TIME_LIMIT, "ran 5 s"))
    assert status is JobStatus.FAILED and error is not None
    assert (error.code, error.message) == ("time_limit", "ran 5 s")


def test_an_error_the_handler_meant_fails_the_job_whatever_its_code() -> None:
    # A CallError named "cancelled" is the application's answer, not a cancel.
    status, _, error = from_reply(replies.encode_failure("cancelled", "no such order", 404))
    assert status is JobStatus.FAILED and error is not None and error.status == 404


def test_a_reply_that_is_not_one_fails_the_job_as_a_worker_error() -> None:
    for body, message in ((b"garbage", "malformed reply: "),
                          (b'{"ok": false}', "the worker failed without saying why")):
        status, _, error = from_reply(body)
        assert status is JobStatus.FAILED and error is not None
        assert error.code == ErrorCode.WORKER_ERROR and error.message.startswith(message)


def test_a_dead_letter_ends_the_job_expired_or_failed_saying_why() -> None:
    assert from_dead_letter({"x-death": [{"reason": "expired", "queue": "rpcfleet.pool.p"}]}
                            )[0] is JobStatus.EXPIRED
    status, error = from_dead_letter({names.HEADER_DEAD_REASON: "max_attempts"})
    assert (status, error.code) == (JobStatus.FAILED, ErrorCode.MAX_ATTEMPTS)
    status, error = from_dead_letter({names.HEADER_DEAD_REASON: "malformed"})
    assert status is JobStatus.FAILED and error.code == ErrorCode.WORKER_ERROR
    assert error.message == "the request was dead-lettered (malformed)"


def test_a_stay_in_a_parking_queue_is_not_why_a_job_died() -> None:
    parked = {"reason": "expired", "queue": names.parking_queue("rpcfleet.replies.s1")}
    rejected = {"reason": "rejected", "queue": "rpcfleet.pool.p"}
    status, error = from_dead_letter({"x-death": [parked, rejected]})
    assert status is JobStatus.FAILED and "broker:rejected" in error.message


def test_a_replys_bookkeeping_is_taken_only_when_it_is_a_positive_number() -> None:
    facts = reply_facts({names.HEADER_WORKER: "h:p:0", names.HEADER_ATTEMPT: 2,
                         names.HEADER_STARTED_AT: 1_000, names.HEADER_FINISHED_AT: 2_000,
                         names.HEADER_PROGRESS_EVENTS: 3})
    assert (facts.worker, facts.starts, facts.started_ms, facts.finished_ms,
            facts.progress_events) == ("h:p:0", 2, 1_000, 2_000, 3)
    odd = reply_facts({names.HEADER_ATTEMPT: 0, names.HEADER_STARTED_AT: "1000",
                       names.HEADER_FINISHED_AT: -5})
    assert (odd.worker, odd.starts, odd.started_ms, odd.finished_ms,
            odd.progress_events) == (None, None, None, None, None)  # a worker before 1.1


def test_a_worker_message_vouches_for_its_attempt_as_a_start_only_when_a_handler_started() -> None:
    """`attempts` counts starts: a reply or dead letter of an attempt that ran nothing (expired,
    invalid params, a killed run's answer, past the maximum) vouches for the starts before it."""
    ran = {names.HEADER_ATTEMPT: 2, names.HEADER_STARTED_AT: 1_000}
    assert starts_vouched(ran) == 2
    assert starts_vouched({names.HEADER_ATTEMPT: 4}) == 3  # max_attempts after three starts
    assert starts_vouched({names.HEADER_ATTEMPT: 1}) == 0  # expired on its first delivery
    assert starts_vouched({}) is None


def test_a_dead_letter_expired_ends_a_job_that_started_failed_not_expired() -> None:
    """`expired` means not started by the deadline: a started job whose redelivery the broker
    expired (its consumer was lost past the timeout) failed."""
    headers = {"x-death": [{"reason": "expired", "queue": "rpcfleet.pool.p"}]}
    assert from_dead_letter(headers)[0] is JobStatus.EXPIRED
    status, error = from_dead_letter(headers, started=True)
    assert (status, error.code) == (JobStatus.FAILED, ErrorCode.WORKER_ERROR)
