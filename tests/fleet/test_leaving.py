"""A consumer leaving for good (SPEC 1.2: it beats `"leaving": true` until it exits) in the
gateway's fleet view: listed apart, counted nowhere, and never mistaken for the process that
takes its slot next. Units of gateway.fleet.view; tests/fleet/test_fleet_view.py watches a real
consumer leave."""

from __future__ import annotations

from gateway.fleet.view import MISSED_BEATS, FleetView
from protocol import WorkerEntry
from rpcfleet.commands.workers import rows


def _beat(pid: int, leaving: bool = False) -> WorkerEntry:
    entry = WorkerEntry(id="h1:p:0", pool="p", host="h1", pid=pid, slot=0, methods=["m"],
                        prefetch=1, concurrency=1, in_flight=1, processed=0, failed=0,
                        pss_bytes=None, cache_bytes=None, last_seen="now", beat_interval=1)
    entry.leaving = leaving
    return entry


def test_a_leaving_consumer_is_listed_but_serves_nothing_until_its_beats_stop(
        clock: list[float]) -> None:
    view = FleetView()
    view.update(_beat(100))
    view.update(_beat(100, leaving=True))
    assert [(e.pid, e.leaving) for e in view.listing()] == [(100, True)]
    assert view.workers() == [] and not view.has_live_worker("p")
    assert view.load("p", backlog=0).consumers == 0
    clock[0] += 1
    view.update(_beat(100, leaving=True))  # still draining
    clock[0] += MISSED_BEATS + 0.5  # exited: no more beats
    assert view.listing() == []


def test_a_beat_that_does_not_say_leaving_from_a_leaving_process_is_stale(
        clock: list[float]) -> None:
    """Beats travel on two channels (the beat loop's, the round-trip probe's): one sent before
    the drain began may arrive after the first leaving one. It must not count the process again."""
    view = FleetView()
    view.update(_beat(100))
    view.update(_beat(100, leaving=True))
    assert view.update(_beat(100)) is False
    assert view.workers() == [] and not view.has_live_worker("p")
    assert [(e.pid, e.leaving) for e in view.listing()] == [(100, True)]


def test_a_new_process_that_reuses_the_pid_of_one_long_gone_is_counted(
        clock: list[float]) -> None:
    """A restarted container forks its first consumer at the same pid: once the leaving one
    has been silent for the missed beats, a beat with that pid is a new process."""
    view = FleetView()
    view.update(_beat(100, leaving=True))
    clock[0] += MISSED_BEATS + 0.5
    assert view.update(_beat(100)) is True
    assert [e.pid for e in view.workers()] == [100] and view.has_live_worker("p")


def test_a_retired_pool_is_not_revived_by_a_beat_of_a_consumer_that_was_leaving(
        clock: list[float]) -> None:
    view = FleetView()
    view.update(_beat(100, leaving=True))  # its consumers drain as the pool is retired
    view.retire("p")
    assert view.pool_of("m") is None
    view.update(_beat(100))  # a late beat of that process
    assert view.pool_of("m") is None and view.is_retired("p")


def test_a_late_leaving_beat_never_hides_the_new_process_in_its_slot(
        clock: list[float]) -> None:
    view = FleetView()
    view.update(_beat(100, leaving=True))  # the old process drains a long handler
    view.update(_beat(200))  # a new one forked into the same slot
    view.update(_beat(100, leaving=True))  # the old one's next beat
    assert [e.pid for e in view.workers()] == [200]
    assert view.has_live_worker("p")
    assert sorted((e.pid, e.leaving) for e in view.listing()) == [(100, True), (200, False)]


def test_the_cli_table_marks_a_leaving_consumer() -> None:
    entry = _beat(100, leaving=True).model_dump(mode="json")
    assert rows([entry])[0][0] == "h1:p:0 (leaving)"
    assert rows([_beat(200).model_dump(mode="json")])[0][0] == "h1:p:0"
