"""Batched methods (SPEC 1.1): one handler call per batch, each request its own answer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from protocol import ErrorCode, WorkerEntry
from tests.support.amqp_client import amqp_client
from tests.support.fleet import StartWorker
from tests.support.gateway import StartGateway, wait_for_workers
from tests.support.jobs import submit, until
from tests.support.waiting import async_wait_for
from tests.workers.test_prefetch import _beats


def _sizes(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


async def test_one_call_serves_a_batch_and_each_request_gets_its_own_answer(
    amqp_url: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    start_worker("tests.pools.batched:pool", pool="batched", prefetch=8)
    log = tmp_path / "calls"
    async with amqp_client(amqp_url) as client:
        params = [{"n": n, "log": str(log)} for n in range(5)]
        params += [{"n": -3, "log": str(log)}, {"n": "not a number"}]
        sent = [await client.send("square", p, timeout=20) for p in params]
        answers = await asyncio.gather(*(client.answer(job_id, timeout=20) for job_id in sent))
    assert [a.reply.result for a in answers[:5]] == [0, 1, 4, 9, 16]
    failed, invalid = answers[5].reply.error, answers[6].reply.error
    assert failed is not None and failed.code == ErrorCode.WORKER_ERROR
    assert "no square of -3" in failed.message  # its own failure, the others unharmed
    assert invalid is not None and invalid.code == ErrorCode.INVALID_PARAMS  # answered alone
    sizes = _sizes(log)
    assert sum(sizes) == 6 and len(sizes) <= 2 and max(sizes) >= 4  # batched, not one by one


async def test_a_batch_never_holds_more_than_the_prefetch(
    amqp_url: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    start_worker("tests.pools.batched:pool", pool="batched", prefetch=3)
    log = tmp_path / "calls"
    async with amqp_client(amqp_url) as client:
        sent = [await client.send("square", {"n": n, "log": str(log)}, timeout=20)
                for n in range(9)]
        answers = await asyncio.gather(*(client.answer(job_id, timeout=20) for job_id in sent))
    assert [a.reply.result for a in answers] == [n * n for n in range(9)]
    assert max(_sizes(log)) <= 3 and sum(_sizes(log)) == 9


async def test_a_raised_exception_or_a_wrong_length_fails_the_whole_batch(
    amqp_url: str, start_worker: StartWorker
) -> None:
    start_worker("tests.pools.batched:pool", pool="batched", prefetch=4)
    async with amqp_client(amqp_url) as client:
        broken = [await client.send("broken", {"n": n}) for n in range(3)]
        short = [await client.send("short", {"n": n}) for n in range(3)]
        answers = await asyncio.gather(*(client.answer(i) for i in [*broken, *short]))
        alive = await client.call("square", {"n": 7})
    for answer in answers[:3]:
        assert answer.reply.error is not None and "whole batch failed" in answer.reply.error.message
    for answer in answers[3:]:
        assert answer.reply.error is not None and answer.reply.error.code == "worker_error"
        assert "items for a batch of" in answer.reply.error.message
    assert alive.reply.result == 49


def test_batch_sizes_are_shown_in_the_fleet_view_and_the_metrics(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker("tests.pools.batched:pool", pool="batched", prefetch=8)
    gateway = start_gateway()
    wait_for_workers(gateway, 1)
    with gateway.client() as http:
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda n: http.post("/v1/rpc/square", json={"n": n}).status_code,
                                  range(8)))

        def shown() -> dict[str, float] | None:
            entry = http.get("/v1/workers").json()[0]
            batches = entry.get("batches") or {}
            return batches.get("square") if batches.get("square", {}).get("requests") == 8 \
                else None

        from tests.support.waiting import wait_for

        stats = wait_for(shown, timeout=10, what="the batch stats in the worker's beat")
        metrics = http.get("/metrics").text
    assert codes == [200] * 8
    assert stats["calls"] < 8 and stats["mean_size"] > 1
    assert 'rpcfleet_worker_batch_size_mean{method="square"' in metrics


async def test_with_prefetch_auto_every_beat_carries_the_batch_sizes(
    amqp_url: str, start_worker: StartWorker
) -> None:
    """auto probes the round trip with a beat every 2 s: that beat is a whole worker entry too,
    or the fleet view would lose the batch sizes each time one arrived."""
    start_worker("tests.pools.batched:pool", pool="batched", prefetch="auto", beat_interval=5)
    beats: list[WorkerEntry] = []
    listener = await _beats(amqp_url, beats)
    async with listener, amqp_client(amqp_url) as client:
        await asyncio.gather(*(client.call("square", {"n": n}, timeout=20) for n in range(8)))
        served = len(beats)
        await async_wait_for(lambda: len(beats) >= served + 3, timeout=12,
                             what="three beats after the calls (auto's probes among them)")
    assert all(beat.batches and beat.batches["square"]["requests"] == 8
               for beat in beats[served + 1:])


def test_a_job_whose_deadline_passes_while_its_batch_waits_for_a_slot_expires_unrun(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    """SPEC: a job's timeout bounds its wait (not started by then: expired). A batch gathers
    while every handler slot is busy; a request whose deadline passes meanwhile is left out of
    the call when the slot frees, and expires, dead-lettered as any late request is."""
    start_worker("tests.pools.batched:pool", pool="batched", prefetch=4)
    gateway = start_gateway()
    wait_for_workers(gateway, 1)
    log = tmp_path / "calls"
    with gateway.client() as http:
        busy = submit(http, "slow", {"n": 3, "log": str(log)}).json()["id"]
        until(http, busy, "running")
        late = submit(http, "slow", {"n": 0, "log": str(log)}, timeout=1).json()["id"]
        ended = until(http, late, "succeeded", "failed", "expired", timeout=30)
        first = until(http, busy, "succeeded", "failed", timeout=30)
        dead = http.get("/v1/pools/batched/dead").json()
    assert first["status"] == "succeeded"
    assert ended["status"] == "expired", ended
    assert _sizes(log) == [1]  # only the busy job's call: the late one never ran
    assert [(d["id"], d["reason"]) for d in dead] == [(late, "expired")], dead


@pytest.mark.slow  # a kill and a replacement
async def test_a_batch_larger_than_16_killed_past_its_limit_is_answered_never_run_again(
    amqp_url: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    """Every request of a batch is tracked for the supervisor's backstop: the table is sized
    for the pool's largest batch (it held 16 per consumer: requests 17-20 had no tombstone and
    ran again)."""
    log = tmp_path / "calls.log"
    start_worker("tests.pools.bigbatch:pool", pool="bigbatch", processes=1, prefetch=20,
                 kill_grace=1)
    async with amqp_client(amqp_url) as client:
        sent = [await client.send("hog", {"n": n, "log": str(log)}) for n in range(20)]
        answers = [await client.answer(call_id, timeout=60) for call_id in sent]
    assert [answer.reply.error.code if answer.reply.error else None for answer in answers] == [
        ErrorCode.TIME_LIMIT] * 20
    assert log.read_text().split() == ["20"]  # one call of the 20, never run again
