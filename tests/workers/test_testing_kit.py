"""`workers.testing`: a pool's handlers called in-process answer as the fleet would."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from workers import JobContext, Pool
from workers.testing import MethodFailed, PoolTester

pool = Pool("kit", cache=lambda: {"greeting": "hello"})


class Name(BaseModel):
    name: str


@pool.method
def greet(params: Name, cache: dict[str, str]) -> str:
    return f"{cache['greeting']}, {params.name}"


@pool.method(time_limit=0.2)
def slow(params: dict[str, object]) -> None:
    import time

    time.sleep(2)


@pool.method
def unserialisable(params: dict[str, object]) -> object:
    return object()


@pool.method
def raw_bytes(params: dict[str, object]) -> object:
    return {"data": b"\x00\x01"}


@pool.method
async def staged(params: dict[str, object], job: JobContext) -> int:
    job.progress(0.5, "half")
    await asyncio.sleep(0)
    return job.attempt


@pool.method
def echo_params(params: dict[str, object]) -> dict[str, object]:
    params["seen"] = True  # a handler may change what it was given
    return {k: v for k, v in params.items() if k != "seen"}


@pool.method(batch=4)
def doubled(params: list[dict[str, int]]) -> list[object]:
    return [ValueError("odd") if p["n"] % 2 else p["n"] * 2 for p in params]


def test_each_failure_carries_the_code_a_client_would_see() -> None:
    tester = PoolTester(pool)
    assert tester.call("greet", {"name": "Ada"}) == "hello, Ada"
    cases = {
        "invalid_params": lambda: tester.call("greet", {"nom": "Ada"}),
        "time_limit": lambda: tester.call("slow"),
        "worker_error": lambda: tester.call("unserialisable"),
        "unknown_method": lambda: tester.call("nope"),
    }
    for code, call in cases.items():
        with pytest.raises(MethodFailed) as failed:
            call()
        assert failed.value.code == code


def test_a_job_gets_its_attempt_and_records_progress() -> None:
    tester = PoolTester(pool)
    assert tester.call("staged", attempt=2) == 2
    assert tester.jobs[-1].progress_seen == [(0.5, "half")]


def test_progress_takes_a_fraction_within_0_1_and_a_str_note() -> None:
    job = JobContext(id="j", method="m", attempt=1, deadline=None, worker="w")
    job.progress(0.5, "half")
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        job.progress(1.5)
    with pytest.raises(TypeError, match="note must be a str"):
        job.progress(0.5, b"half")  # type: ignore[arg-type]


async def test_async_tests_use_acall() -> None:
    tester = PoolTester(pool, cache={"greeting": "hi"})
    assert await tester.acall("greet", {"name": "Bo"}) == "hi, Bo"


def test_a_batch_answers_per_request_and_is_refused_by_call() -> None:
    tester = PoolTester(pool)
    answers = tester.call_batch("doubled", [{"n": 2}, {"n": 3}])
    assert answers[0] == 4 and isinstance(answers[1], MethodFailed)
    with pytest.raises(TypeError):
        tester.call("doubled", {"n": 2})


def test_a_result_that_is_not_json_says_the_one_rule_of_what_a_result_may_hold() -> None:
    tester = PoolTester(pool)
    with pytest.raises(MethodFailed) as refused:
        tester.call("raw_bytes")
    assert refused.value.code == "worker_error"
    assert "bytes" in refused.value.message and "base64" in refused.value.message
    assert "datetime" in refused.value.message  # what is converted, said once, everywhere


def test_a_handler_past_its_time_limit_is_answered_at_the_limit_not_waited_for() -> None:
    """A consumer answers `time_limit` at the limit and is replaced; the test must not wait
    the handler out (one stuck in a loop would hang the test run)."""
    import time

    tester = PoolTester(pool)
    started = time.monotonic()
    with pytest.raises(MethodFailed) as failed:
        tester.call("slow")  # sleeps 2 s under a 0.2 s limit
    assert failed.value.code == "time_limit"
    assert time.monotonic() - started < 1.5


def test_params_travel_as_json_as_they_do_to_a_consumer() -> None:
    """What reaches the handler is what a client can send: a tuple arrives a list, and what JSON
    cannot hold is the test's mistake, not a value the handler would ever see."""
    tester = PoolTester(pool)
    sent = {"name": "Bo", "extra": (1, 2)}
    assert tester.call("echo_params", sent) == {"name": "Bo", "extra": [1, 2]}
    assert sent == {"name": "Bo", "extra": (1, 2)}  # the test's own dict is left as it was
    with pytest.raises(TypeError, match="params a client can send are JSON"):
        tester.call("echo_params", {"raw": b"bytes"})


def test_a_batch_holds_at_most_the_methods_batch_size() -> None:
    tester = PoolTester(pool)
    with pytest.raises(ValueError, match="at most 4"):
        tester.call_batch("doubled", [{"n": n} for n in range(5)])
