"""Priorities on the wire (SPEC 1.2): the API's priorities stay (sync calls ahead of every job;
jobs 0-9, a higher one first) on fewer broker levels, and a gateway maps a job onto the levels
its pool's queue actually has (a queue declared before 1.2 keeps its 10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol import names
from protocol.queues import (
    JOB_PRIORITY_LEVELS,
    LEGACY_MAX_PRIORITY,
    job_message_priority,
    pool_queue_arguments,
)
from tests.support.fleet import StartWorker
from tests.support.gateway import StartGateway
from tests.support.jobs import occupy, submit, until
from tests.support.rabbit import Vhost
from tests.support.waiting import wait_for


@pytest.mark.parametrize("queue_max", [2, 3, 5, 10, None])
def test_jobs_keep_their_order_below_the_sync_calls_on_any_number_of_levels(
    queue_max: int | None,
) -> None:
    mapped = [job_message_priority(p, "classic", queue_max) for p in range(10)]
    assert mapped == sorted(mapped)  # a higher priority never lands below a lower one
    assert mapped[9] > mapped[0]  # a priority-9 job overtakes priority-0 ones
    levels = queue_max or JOB_PRIORITY_LEVELS
    assert set(mapped) == set(range(levels))  # every level used, all below the sync calls'
    assert names.SYNC_PRIORITY >= levels


def test_the_default_is_three_levels_and_ten_keeps_every_priority() -> None:
    assert [job_message_priority(p, "classic") for p in range(10)] == [0] * 5 + [1] * 5
    assert [job_message_priority(p, "classic", 10) for p in range(10)] == list(range(10))
    assert pool_queue_arguments("p", "classic")["x-max-priority"] == JOB_PRIORITY_LEVELS == 2


def test_the_queues_reported_maximum_wins_over_the_queue_type_the_gateway_was_set_for() -> None:
    """A gateway set for quorum queues (several broker URLs) in front of workers that declared a
    classic queue with 2 levels: capping jobs at 4 would put priority 2-9 jobs at the sync calls'
    level, and sync calls would stop overtaking them."""
    mapped = [job_message_priority(p, "quorum", 2) for p in range(10)]
    assert mapped == [0] * 5 + [1] * 5 and max(mapped) < names.SYNC_PRIORITY
    assert job_message_priority(9, "quorum", None) == 4  # unknown: a quorum queue's normal band


def test_a_queue_declared_with_ten_levels_before_keeps_them_and_jobs_map_onto_them(
    vhost: Vhost, start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    # As rpcfleet 1.1 declared it: x-max-priority 10.
    arguments = pool_queue_arguments("basic", "classic", priority_levels=LEGACY_MAX_PRIORITY)
    vhost.management("PUT", f"/api/queues/{vhost.name}/{names.pool_queue('basic')}",
                     {"durable": True, "arguments": arguments})
    worker = start_worker()
    gateway = start_gateway()
    log = tmp_path / "order"
    with gateway.client() as http:
        wait_for(lambda: [w.get("queue_max_priority") for w in http.get("/v1/workers").json()]
                 == [LEGACY_MAX_PRIORITY], what="the worker to announce its queue's levels")
        # Busy long enough for both submissions and a look at the queue on a loaded machine
        # (1.5 s was missed once: the jobs ran before rabbitmqctl saw them queued).
        occupy(http, tmp_path / "busy", seconds=5)
        # 5 and 7 share a level on the default 3 levels; on 10 levels, 7 goes first.
        jobs = [submit(http, "record", {"tag": tag, "log": str(log)}, priority=priority)
                .json()["id"] for tag, priority in [("five", 5), ("seven", 7)]]
        wait_for(lambda: vhost.queue_counts(names.pool_queue("basic"))[0] == 2,
                 what="the jobs to wait in the queue")
        for job_id in jobs:
            until(http, job_id, "succeeded")
    assert log.read_text().split() == ["seven", "five"]
    queue = vhost.management("GET", f"/api/queues/{vhost.name}/{names.pool_queue('basic')}")
    assert queue["arguments"]["x-max-priority"] == LEGACY_MAX_PRIORITY
    assert "exists with other arguments" not in worker.output()
