"""What the gateway's fleet view keeps of the beats it hears, and for how long: a pool's queue
maximum and its methods follow what its live workers say now, and a beat no worker could mean
is malformed. Units of gateway.fleet.view; tests/fleet/test_fleet_view.py watches real workers."""

from __future__ import annotations

import pydantic
import pytest

from gateway.fleet.view import MISSED_BEATS, FleetView
from protocol import WorkerEntry
from protocol.fleet import Processes


def _beat(pool: str, pid: int, methods: list[str], max_priority: int | None = None,
          elastic: bool = True) -> WorkerEntry:
    entry = WorkerEntry(id=f"h1:{pool}:0", pool=pool, host="h1", pid=pid, slot=0,
                        methods=methods, prefetch=1, concurrency=1, in_flight=0, processed=0,
                        failed=0, pss_bytes=None, cache_bytes=None, last_seen="now",
                        beat_interval=1)
    entry.queue_max_priority = max_priority
    # Workers since 1.2 always say their host's processes; older ones never do.
    entry.processes = Processes(min=1, max=1, now=1) if elastic else None
    return entry


def test_a_pool_queue_redeclared_without_levels_is_mapped_as_such_once_its_workers_say_so(
        clock: list[float]) -> None:
    """A classic queue with 10 levels deleted and declared again as quorum under a running
    gateway: its new workers beat no maximum, and jobs must not go out at levels 5-9 (which a
    quorum queue files with the sync calls)."""
    view = FleetView()
    view.update(_beat("p", 100, ["m"], max_priority=10))
    assert view.queue_max_priority("m") == 10
    view.update(_beat("p", 200, ["m"], max_priority=None))
    assert view.queue_max_priority("m") is None


def test_a_worker_from_before_queue_maxima_were_sent_leaves_the_one_heard(
        clock: list[float]) -> None:
    """During a rolling upgrade an old worker's beat says nothing of the maximum."""
    view = FleetView()
    view.update(_beat("p", 100, ["m"], max_priority=2))
    view.update(_beat("p", 300, ["m"], max_priority=None, elastic=False))
    assert view.queue_max_priority("m") == 2


def test_a_retired_pool_forgets_its_queue_maximum(clock: list[float]) -> None:
    view = FleetView()
    view.update(_beat("p", 100, ["m"], max_priority=10))
    view.retire("p")
    assert view.queue_max_priority("m") is None


def test_a_method_a_live_pool_stopped_announcing_goes_to_the_pool_that_announces_it(
        clock: list[float]) -> None:
    view = FleetView()
    view.update(_beat("a", 100, ["m", "other"]))
    view.update(_beat("a", 100, ["other"]))  # pool a redeployed without m, alive
    view.update(_beat("b", 200, ["m"]))
    assert view.pool_of("m") == "b"
    assert view.clashes() == {}


def test_the_first_pool_keeps_a_method_two_live_pools_announce(clock: list[float]) -> None:
    view = FleetView()
    view.update(_beat("a", 100, ["m"]))
    view.update(_beat("b", 200, ["m"]))
    view.update(_beat("a", 100, ["m"]))
    assert view.pool_of("m") == "a"
    clock[0] += MISSED_BEATS + 0.5
    view.update(_beat("b", 200, ["m"]))  # a went silent: b takes it
    assert view.pool_of("m") == "b"


@pytest.mark.parametrize("field", [{"concurrency": 0}, {"beat_interval": 0},
                                   {"beat_interval": -1}, {"concurrency": -2}])
def test_a_beat_no_worker_could_send_is_malformed(field: dict[str, object]) -> None:
    """Another language's worker saying concurrency 0 would divide the fleet's busy share by
    zero at every /metrics scrape; a beat interval of 0 drops it at once."""
    beat = _beat("p", 100, ["m"]).model_dump() | field
    with pytest.raises(pydantic.ValidationError):
        WorkerEntry.model_validate(beat)


@pytest.mark.parametrize("args", [("--gateway", "http://[::1"), ("--key", "clé")])
def test_an_operator_command_given_a_bad_gateway_url_or_key_says_so_on_stderr(
        args: tuple[str, ...]) -> None:
    """No traceback, nothing on stdout (a `rpcfleet workers --json | jq` would read it)."""
    import subprocess
    import sys

    from tests.support.processes import REPO

    done = subprocess.run([sys.executable, "-m", "rpcfleet.cli", "workers", "--json", *args,
                           *(() if "--gateway" in args else ("--gateway", "http://127.0.0.1:9"))],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and done.stdout == "", done.stdout
    assert "rpcfleet workers:" in done.stderr and "Traceback" not in done.stderr, done.stderr
