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
    judge.nacked("echo")
    judge.confirmed("echo")  # a renewal helped: the next stall is answered quickly again
    assert judge.renewal_due(now=at + RENEW_MAX_S + 1)
    assert judge.renewal_due(now=at + RENEW_MAX_S + 1 + RENEW_FIRST_S)


def test_only_a_stalled_target_confirmed_again_resets_the_pace_of_renewals() -> None:
    """A queue that stays full keeps being nacked on every new channel: the first confirms of
    the other targets on each one say nothing of it, and must not bring renewals back to
    several a second."""
    judge = NackJudge()
    assert judge.nacked("full") is Nack.STALLED
    assert judge.renewal_due(now=100.0)  # the next one 0.2 s on
    assert judge.renewal_due(now=100.21)  # the next one 0.4 s on
    judge.opened()
    judge.confirmed("other")  # another pool's first confirm on the new channel
    assert judge.nacked("full") is Nack.STALLED
    assert judge.renewal_due(now=100.62)  # the next one 0.8 s on, not 0.2
    assert not judge.renewal_due(now=100.9)
    judge.confirmed("full")  # it took one again: the pace resets
    assert judge.renewal_due(now=101.43)
    assert judge.renewal_due(now=101.44 + RENEW_FIRST_S)


async def test_a_renewal_that_gets_no_channel_gives_up_and_the_next_one_can_start() -> None:
    """A connection blocked by an alarm opens no channel until unblocked, and one that dies
    blocked never does: a renewal waiting for ever would bar every later one."""
    import asyncio
    from typing import Any

    from transport.confirms import ConfirmingChannel

    class NeverOpens:
        is_closed = False
        asked = 0

        async def channel(self, **_: Any) -> Any:
            self.asked += 1
            await asyncio.Event().wait()  # blocked: never answers

    connection = NeverOpens()
    confirming = ConfirmingChannel(NackJudge(), retire_after=1, renew_timeout=0.05)
    confirming.connection = connection  # type: ignore[assignment]
    first = confirming.renew()
    assert first is not None
    async with asyncio.timeout(2):
        await first  # gave up
    confirming.judge._next_renewal = 0.0  # the judge's pace aside
    second = confirming.renew()
    assert second is not None and second is not first
    async with asyncio.timeout(2):
        await second
    assert connection.asked == 2
    await confirming.close()
