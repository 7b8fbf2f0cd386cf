"""The consumers a pool needs now (gateway.fleet.demand), the gauge a KEDA rule reads to add
worker hosts: units of the arithmetic and of the inputs the fleet view gathers from beats;
tests/workers/test_elastic_pools.py reads it from a real gateway under load."""

from __future__ import annotations

import pytest

from gateway.fleet.demand import DRAIN_TARGET_S, PoolLoad, desired_consumers
from gateway.fleet.view import FleetView
from protocol import Processes, WorkerEntry


@pytest.mark.parametrize(("load", "needed"), [
    (PoolLoad(consumers=4, busy=0.0, throughput=0.0, backlog=0), 0),  # idle
    (PoolLoad(consumers=4, busy=2.5, throughput=25.0, backlog=0), 3),  # carried, no queue
    (PoolLoad(consumers=4, busy=4.0, throughput=40.0, backlog=None), 4),  # not polled yet
    # 4 busy complete 40/s, 10/s each: 200 waiting clear in 10 s with 2 more.
    (PoolLoad(consumers=4, busy=4.0, throughput=40.0, backlog=200), 6),
    (PoolLoad(consumers=2, busy=2.0, throughput=0.0, backlog=10), 3),  # nothing measured yet
])
def test_busy_consumers_plus_what_clears_the_backlog_in_time(load: PoolLoad,
                                                             needed: int) -> None:
    assert desired_consumers(load) == needed


def test_the_backlog_term_is_the_drain_target() -> None:
    per_consumer = 5.0
    load = PoolLoad(consumers=1, busy=1.0, throughput=per_consumer,
                    backlog=int(3 * per_consumer * DRAIN_TARGET_S))
    assert desired_consumers(load) == 1 + 3


def _beat(slot: int, processed: int, in_flight: int, host: str = "h1",
          processes: Processes | None = None) -> WorkerEntry:
    return WorkerEntry(id=f"{host}:p:{slot}", pool="p", host=host, pid=100 + slot, slot=slot,
                       methods=["m"], prefetch=1, concurrency=1, in_flight=in_flight,
                       processed=processed, failed=0, pss_bytes=None, cache_bytes=None,
                       last_seen="now", beat_interval=60, processes=processes)


def test_the_view_measures_each_workers_rate_from_its_beats(clock: list[float]) -> None:
    view = FleetView()
    for step in range(4):  # 10 s between beats, 50 more each time: 5/s each
        view.update(_beat(0, processed=50 * step, in_flight=1))
        view.update(_beat(1, processed=50 * step, in_flight=1))
        clock[0] += 10
    clock[0] -= 10
    load = view.load("p", backlog=100)
    assert load.consumers == 2 and load.busy == 2.0
    assert load.throughput == pytest.approx(10.0)
    assert view.desired_consumers("p", 100) == 2 + 2  # 100 waiting at 5/s each: 2 more


def test_the_view_lists_each_hosts_range_once() -> None:
    view = FleetView()
    for slot in range(3):
        view.update(_beat(slot, 0, 0, processes=Processes(min=1, max=4, now=3, added=2)))
    view.update(_beat(0, 0, 0, host="h2", processes=Processes(min=1, max=4, now=1)))
    hosts = view.hosts()
    assert set(hosts) == {("p", "h1"), ("p", "h2")}
    assert (hosts[("p", "h1")].now, hosts[("p", "h1")].added) == (3, 2)
