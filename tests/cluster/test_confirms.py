"""What a publisher nack means (transport.confirms): a unit of the judgement both the gateway and
the worker apply, whose broker behaviour tests/cluster/test_failover.py shows end to end."""

from __future__ import annotations

from transport.confirms import RENEW_FIRST_S, RENEW_MAX_S, Nack, NackJudge


def test_a_nack_after_confirms_on_the_channel_is_a_full_queue() -> None:
    judge = NackJudge()
    judge.confirmed("echo")
    assert judge.nacked("echo") is Nack.REFUSED


def test_a_nack_before_any_confirm_of_that_target_stalls_the_channel() -> None:
    judge = NackJudge()
    judge.confirmed("other")
    assert judge.nacked("echo") is Nack.STALLED


def test_a_reopened_channel_has_nothing_confirmed() -> None:
    judge = NackJudge()
    judge.confirmed("echo")
    judge.opened()
    assert judge.nacked("echo") is Nack.STALLED


def test_classic_queues_never_stall_a_channel() -> None:
    assert NackJudge(quorum=False).nacked("echo") is Nack.REFUSED


def test_renewals_back_off_while_they_do_not_help_and_reset_once_they_do() -> None:
    judge = NackJudge()
    assert judge.renewal_due(now=100.0)
    assert not judge.renewal_due(now=100.0 + RENEW_FIRST_S / 2)
    at, pauses = 100.0, []
    for _ in range(8):  # each renewal due only once the previous pause has passed
        step = 0.01
        while not judge.renewal_due(now=at + step):
            step += 0.01
        pauses.append(step)
        at += step
    assert pauses[0] < pauses[1] < pauses[2] and max(pauses) <= RENEW_MAX_S + 0.02
    judge.confirmed("echo")  # a renewal helped: the next stall is answered quickly again
    assert judge.renewal_due(now=at + RENEW_MAX_S + 1)
    assert judge.renewal_due(now=at + RENEW_MAX_S + 1 + RENEW_FIRST_S)
