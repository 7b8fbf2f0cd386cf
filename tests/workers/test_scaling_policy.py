"""When an elastic pool adds or retires a consumer (workers/scaling.py): units of the policy the
supervisor applies; tests/workers/test_elastic_pools.py shows it on real processes."""

from __future__ import annotations

import itertools

import pytest

from protocol import ProcessRange, SetProcesses
from protocol.fleet import read_control
from workers.scaling import RETIRE_SHARE, SATURATED_S, UP_EVERY_S, Decision, Sample, Scaler
from workers.settings import WorkerSettings

TICK = 0.2  # the supervisor's sampling interval


def run(scaler: Scaler, seconds: float, live: int, busy: int, backlog: int | None,
        least: int = 1, most: int = 8, start: float = 0.0) -> list[tuple[float, Decision]]:
    """Feed `seconds` of identical samples, applying each decision to `live`."""
    decisions: list[tuple[float, Decision]] = []
    at = start
    while at < start + seconds:
        scaler.observe(Sample(at, live, min(busy, live), backlog))
        decision = scaler.decide(at, live, least, most)
        if decision is not None:
            decisions.append((at, decision))
            live += decision.change
        at = round(at + TICK, 6)
    return decisions


def test_work_waiting_with_every_consumer_busy_adds_one_at_most_every_3_s() -> None:
    decisions = run(Scaler(idle_s=60), seconds=10, live=1, busy=8, backlog=50)
    assert [d.change for _, d in decisions] == [1, 1, 1]
    times = [at for at, _ in decisions]
    assert times[0] <= SATURATED_S + TICK  # a trend, not an instant: about 1.5 s in
    assert all(b - a >= UP_EVERY_S - 1e-9 for a, b in itertools.pairwise(times))
    assert "50 requests waiting" in decisions[0][1].why


def test_busy_consumers_with_nothing_waiting_are_exactly_sized() -> None:
    assert run(Scaler(idle_s=60), seconds=20, live=2, busy=2, backlog=0) == []


def test_a_backlog_with_an_idle_consumer_adds_nothing() -> None:
    assert run(Scaler(idle_s=60), seconds=20, live=2, busy=1, backlog=30) == []


def test_an_unknown_backlog_adds_nothing() -> None:
    assert run(Scaler(idle_s=60), seconds=20, live=2, busy=2, backlog=None) == []


def test_never_past_max() -> None:
    decisions = run(Scaler(idle_s=60), seconds=30, live=1, busy=99, backlog=99, most=3)
    assert sum(d.change for _, d in decisions) == 2


def test_idle_for_the_whole_period_retires_one_per_period() -> None:
    decisions = run(Scaler(idle_s=5), seconds=16, live=4, busy=0, backlog=0)
    assert [d.change for _, d in decisions] == [-1, -1, -1]
    times = [at for at, _ in decisions]
    assert times[0] >= 5 and all(b - a >= 5 - 1e-9 for a, b in itertools.pairwise(times))


def test_never_below_min() -> None:
    decisions = run(Scaler(idle_s=2), seconds=30, live=4, busy=0, backlog=0, least=2)
    assert sum(d.change for _, d in decisions) == -2


def test_steady_load_that_needs_the_consumers_it_has_retires_none() -> None:
    # 3 consumers, 2 of them busy all the time: 2 would be 100 % busy, over the retire share.
    assert run(Scaler(idle_s=5), seconds=60, live=3, busy=2, backlog=0) == []


def test_steady_load_does_not_flap_between_up_and_down() -> None:
    """A load that 2 consumers carry at 60 % (1.2 busy on average, never saturating 2): one of
    3 is retired once, then nothing more, in either direction."""
    scaler = Scaler(idle_s=5)
    live, at, changes = 3, 0.0, []
    for step in range(int(120 / TICK)):
        busy = 2 if step % 5 == 0 else 1  # 1.2 on average
        scaler.observe(Sample(at, live, min(busy, live), 0))
        decision = scaler.decide(at, live, 1, 8)
        if decision is not None:
            changes.append(decision.change)
            live += decision.change
        at += TICK
    assert changes == [-1]
    assert 1.2 > RETIRE_SHARE * (live - 1)  # why it stops at 2


def test_below_min_forks_at_once_and_above_max_retires_at_once() -> None:
    scaler = Scaler(idle_s=60)
    scaler.observe(Sample(0.0, 1, 0, 0))
    assert scaler.decide(0.0, 1, 4, 8) == Decision(3, "below the minimum of 4")
    assert scaler.decide(0.2, 6, 1, 2) == Decision(-4, "above the maximum of 2")


@pytest.mark.parametrize(("text", "expected"), [("4", (4, 4)), ("1..8", (1, 8)),
                                                (" 2..2 ", (2, 2)), (3, (3, 3))])
def test_a_process_range_is_a_count_or_min_dot_dot_max(text: str | int,
                                                       expected: tuple[int, int]) -> None:
    parsed = ProcessRange.parse(text)
    assert (parsed.min, parsed.max) == expected
    assert parsed.elastic == (expected[0] < expected[1])


@pytest.mark.parametrize(("text", "message"), [
    ("0..4", "at least 1 consumer"), ("5..2", "MIN is above MAX"),
    ("many", "not a count (4) or a range (1..8)"), ("1..", "not a count")])
def test_a_bad_process_range_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ProcessRange.parse(text)


def test_the_worker_settings_read_a_range_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RPCFLEET_PROCESSES", "2..6")
    settings = WorkerSettings()
    assert (settings.processes.min, settings.processes.max) == (2, 6)
    monkeypatch.setenv("RPCFLEET_PROCESSES", "3")
    assert WorkerSettings().processes == ProcessRange(min=3, max=3)
    monkeypatch.setenv("RPCFLEET_PROCESSES", "1..64")
    with pytest.raises(ValueError, match="above max_processes"):
        WorkerSettings()


def test_set_processes_is_a_control_command() -> None:
    command = read_control(b'{"op": "set_processes", "min": 2, "max": 5}')
    assert isinstance(command, SetProcesses)
    assert command.range == ProcessRange(min=2, max=5)


def test_a_set_processes_command_with_min_above_max_is_malformed_not_applied() -> None:
    """An inverted range, applied, had each host fork below the minimum and retire above the
    maximum in turn, for ever; over HTTP it is 422, on the wire a consumer ignores it."""
    with pytest.raises(ValueError, match="above max"):
        read_control(b'{"op": "set_processes", "min": 3, "max": 1}')
