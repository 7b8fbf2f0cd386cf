"""Before any handler runs, a consumer decides what a delivery is (SPEC: worker semantics), in
this order: malformed, redelivered, killed before, cancelled, past its deadline, invalid params,
run. `workers.consumer.decision.decide` is that rule, pure: these are its cases."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from protocol import DeadReason, ErrorCode, codec, names
from workers.consumer.decision import Known, Run, decide
from workers.consumer.settling import Settle
from workers.handlers import Handler

NOW = 1_800_000_000_000
JOB_QUEUE = "rpcfleet.replies.s1"


class Greeting(BaseModel):
    name: str


def greet(params: Greeting) -> str:
    return f"hello {params.name}"


def slow(params: dict[str, Any]) -> None:
    return None


HANDLERS = {"greet": Handler.build(greet, "greet", None),
            "slow": Handler.build(slow, "slow", time_limit=2.0)}


@dataclass
class Message:
    correlation_id: str | None = "job-1"
    type: str | None = "greet"
    reply_to: str | None = names.DIRECT_REPLY_TO
    headers: dict[str, Any] = field(default_factory=lambda: {names.HEADER_ATTEMPT: 1})
    body: bytes = codec.dumps({"name": "ada"})
    redelivered: bool = False


def known(*, tombstones: dict[str, str] | None = None, cancelled: tuple[str, ...] = (),
          max_attempts: int = 3) -> Known:
    return Known("basic", HANDLERS, max_attempts, (tombstones or {}).get, set(cancelled), NOW)


def settled(message: Message, state: Known | None = None) -> Settle:
    decision = decide(message, state or known())
    assert isinstance(decision, Settle), decision
    return decision


def test_a_well_formed_request_runs_with_its_parsed_params_attempt_and_deadline() -> None:
    message = Message(headers={names.HEADER_ATTEMPT: 1, names.HEADER_DEADLINE: NOW + 5000})
    decision = decide(message, known())
    assert isinstance(decision, Run)
    assert (decision.handler.name, decision.params, decision.attempt, decision.deadline) == (
        "greet", Greeting(name="ada"), 1, NOW + 5000)


def test_malformed_requests_are_dead_lettered_and_never_run() -> None:
    assert settled(Message(correlation_id=None)).dead == (DeadReason.MALFORMED,
                                                          "no correlation_id")
    assert settled(Message(body=b"{not json")).dead == (DeadReason.MALFORMED,
                                                        "body is not JSON")
    no_reply = settled(Message(type="nope", reply_to=None))
    assert no_reply.dead is not None and no_reply.dead[0] == DeadReason.MALFORMED


def test_an_unknown_method_with_someone_waiting_is_answered_not_dead_lettered() -> None:
    decision = settled(Message(type="nope"))
    assert decision.dead is None
    assert decision.reply is not None and decision.reply.code == ErrorCode.UNKNOWN_METHOD


def test_a_redelivery_is_republished_as_the_next_attempt_until_the_maximum() -> None:
    again = settled(Message(redelivered=True, headers={names.HEADER_ATTEMPT: 1}))
    assert (again.retry, again.attempt, again.reply, again.dead) == (True, 2, None, None)
    last = settled(Message(redelivered=True, headers={names.HEADER_ATTEMPT: 3}))
    assert last.dead is not None and last.dead[0] == DeadReason.MAX_ATTEMPTS
    assert last.reply is not None and last.reply.code == ErrorCode.MAX_ATTEMPTS
    assert last.attempt == 4 and not last.retry


def test_a_request_killed_here_before_is_answered_and_not_run_again() -> None:
    # Its consumer was killed at the time limit; the supervisor left a tombstone.
    message = Message(type="slow", redelivered=True, headers={names.HEADER_ATTEMPT: 1})
    decision = settled(message, known(tombstones={"job-1": "time_limit"}))
    assert not decision.retry
    assert decision.reply is not None and decision.reply.code == ErrorCode.TIME_LIMIT
    assert b"2.0 s" in decision.reply.body
    cancelled = settled(message, known(tombstones={"job-1": "cancelled"}))
    assert cancelled.reply is not None and cancelled.reply.code == ErrorCode.CANCELLED


def test_tombstones_are_not_read_for_a_first_attempt() -> None:
    def no_reading(job_id: str) -> str | None:
        raise AssertionError("a first attempt read the tombstones")

    state = Known("basic", HANDLERS, 3, no_reading, set(), NOW)
    assert isinstance(decide(Message(), state), Run)


def test_a_job_cancelled_before_it_started_is_answered_cancelled() -> None:
    decision = settled(Message(reply_to=JOB_QUEUE), known(cancelled=("job-1",)))
    assert decision.reply is not None and decision.reply.code == ErrorCode.CANCELLED
    assert decision.dead is None


def test_past_its_deadline_a_request_is_dead_lettered_and_only_a_job_is_answered() -> None:
    late = {names.HEADER_ATTEMPT: 1, names.HEADER_DEADLINE: NOW - 1}
    job = settled(Message(reply_to=JOB_QUEUE, headers=late))
    assert job.dead == (DeadReason.EXPIRED, "deadline passed while queued")
    assert job.reply is not None and job.reply.code == ErrorCode.EXPIRED
    call = settled(Message(headers=late))  # its caller gave up at the deadline
    assert call.dead == (DeadReason.EXPIRED, "deadline passed while queued")
    assert call.reply is None


def test_a_job_delivered_again_after_its_consumer_died_runs_late_but_a_call_does_not() -> None:
    """A job's timeout bounds its wait in the queue, which its first delivery ended; a sync
    caller has gone at its deadline whatever the attempt."""
    rerun = {names.HEADER_ATTEMPT: 2, names.HEADER_DEADLINE: NOW - 1}
    assert isinstance(decide(Message(reply_to=JOB_QUEUE, headers=rerun), known()), Run)
    call = settled(Message(headers=rerun))
    assert call.dead == (DeadReason.EXPIRED, "deadline passed while queued")


def test_params_the_handler_refuses_are_answered_invalid_params() -> None:
    decision = settled(Message(body=codec.dumps({"nom": "ada"})))
    assert decision.reply is not None and decision.reply.code == ErrorCode.INVALID_PARAMS
    assert decision.dead is None
