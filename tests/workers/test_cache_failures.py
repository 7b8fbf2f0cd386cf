"""A cache loader that raises says in one line what failed and where, and the pool stops with a
clear exit instead of a traceback (preload) or a crash-and-fork loop (--no-preload)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.fleet import StartWorker
from workers.preparing import EXIT_GAVE_UP
from workers.supervisor import CACHE_ATTEMPTS

BROKEN = '''
import json

from workers import Pool


def load():
    with open("/nonexistent/products.json") as data:
        return json.load(data)


pool = Pool("broken", cache=load)


@pool.method
def lookup(params: dict) -> dict:
    return params
'''


def _start_broken(start_worker: StartWorker, tmp_path: Path, *extra: str,
                  processes: int = 2) -> tuple[int, str, float]:
    (tmp_path / "broken.py").write_text(BROKEN)
    started = time.monotonic()
    proc = start_worker("broken:pool", pool="broken", wait=False, processes=processes,
                        extra=("--app-dir", str(tmp_path), *extra))
    code = proc.wait(timeout=90)
    return code, proc.output(), time.monotonic() - started


def test_a_preloaded_cache_that_fails_stops_the_pool_in_one_line(
    start_worker: StartWorker, tmp_path: Path
) -> None:
    code, output, _ = _start_broken(start_worker, tmp_path)
    assert code == EXIT_GAVE_UP, output
    errors = [line for line in output.splitlines() if " ERROR " in line]
    assert len(errors) == 1, output
    assert ("pool broken does not start: the cache loader of pool 'broken' failed at "
            f"{tmp_path / 'broken.py'}:8 in load: FileNotFoundError") in errors[0]
    assert "Traceback" not in output and "consumer pid" not in output  # nothing forked


@pytest.mark.slow  # a long scenario: in .ci/run's slow step
def test_a_cache_that_fails_in_every_consumer_backs_off_then_gives_up(
    start_worker: StartWorker, tmp_path: Path
) -> None:
    # One consumer, so the pauses follow one another (each slot keeps its own).
    code, output, took = _start_broken(start_worker, tmp_path, "--no-preload", processes=1)
    assert code == EXIT_GAVE_UP, output
    assert "cache of None bytes" not in output  # the misleading line of before
    assert "each consumer builds its own cache (--no-preload)" in output
    stops = [line for line in output.splitlines() if "stops: the cache loader" in line]
    assert len(stops) == CACHE_ATTEMPTS, output
    assert "FileNotFoundError" in stops[0] and "Traceback" not in output
    pauses = [line.rsplit("trying again in ", 1)[1] for line in output.splitlines()
              if "trying again in" in line]
    assert pauses == ["1 s", "2 s", "4 s", "8 s"], output
    assert f"failed {CACHE_ATTEMPTS} times in a row" in output
    assert took >= 1 + 2 + 4 + 8  # backing off, not once a second


FLAKY = '''
import os

from workers import Pool

LOADS = {loads!r}


def load():
    with open(LOADS, "a") as out:  # one line per load, from every consumer
        out.write("x\\n")
    with open(LOADS) as seen:
        if len(seen.read().split()) <= {failing}:
            raise ConnectionError("the data service is not up yet")
    return {{"ready": True}}


pool = Pool("flaky", cache=load)


@pool.method
def lookup(params: dict) -> dict:
    return params
'''


@pytest.mark.slow  # backs off for seconds
def test_each_slot_counts_its_own_cache_failures(
    start_worker: StartWorker, tmp_path: Path
) -> None:
    """Four consumers building their own cache while its source is not up: their first loads
    all fail at once. Each slot is tried again after 1, 2, 4 s and gives up after five failures
    of its own (the pool used to count every slot's together and gave up after about 1 s)."""
    from tests.support.waiting import wait_for

    loads = tmp_path / "loads"
    (tmp_path / "flaky.py").write_text(FLAKY.format(loads=str(loads), failing=6))
    proc = start_worker("flaky:pool", pool="flaky", wait=False, processes=4,
                        extra=("--app-dir", str(tmp_path), "--no-preload"))
    wait_for(lambda: proc.output().count(" serving lookup") >= 4, timeout=60,
             what="every consumer serving once the source is up", detail=proc.output)
    output = proc.output()
    assert "giving up" not in output, output
    assert len(loads.read_text().split()) >= 6 + 4
