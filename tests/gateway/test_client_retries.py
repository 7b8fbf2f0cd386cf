"""What `rpcfleet.client` sends again by itself (issue 27: riding through a broker failover).

A unit of the client's retry rule, over httpx's mock transport: the gateway's answers are given,
the client's requests are counted. The rule: a 503 or a refused connection is tried again after
Retry-After; a job always (its Idempotency-Key makes a second submission the same job); a sync
call only when the answer carries no id (nothing was enqueued), since one that carries an id may
have run."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from rpcfleet.client import Client, RpcfleetError

JOB = {"id": "j1", "method": "echo", "status": "queued", "result": None, "error": None,
       "progress": None, "attempts": 0, "worker": None, "created_at": "2026-12-06T08:00:00.000Z",
       "started_at": None, "finished_at": None, "callback": None}


def _unavailable(with_id: bool) -> httpx.Response:
    error = {"code": "unavailable", "message": "the queue cannot take requests right now"}
    if with_id:
        error["id"] = "j1"
    return httpx.Response(503, json={"error": error}, headers={"Retry-After": "0.01"})


def _client(answers: list[httpx.Response], seen: list[httpx.Request]) -> Client:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    client = Client("http://gateway", retries=3)
    client.http = httpx.Client(base_url="http://gateway", transport=httpx.MockTransport(answer))
    return client


@pytest.mark.parametrize("with_id", [False, True])
def test_a_job_refused_503_is_submitted_again_under_the_same_idempotency_key(
    with_id: bool
) -> None:
    seen: list[httpx.Request] = []
    with _client([_unavailable(with_id), httpx.Response(202, json=JOB)], seen) as fleet:
        job = fleet.submit("echo", {"x": 1})
    assert job.id == "j1" and len(seen) == 2
    assert seen[0].headers["Idempotency-Key"] == seen[1].headers["Idempotency-Key"]


def test_a_call_refused_before_it_was_enqueued_is_sent_again() -> None:
    seen: list[httpx.Request] = []
    answers = [_unavailable(with_id=False),
               httpx.Response(200, json={"id": "c2", "result": {"x": 1}})]
    with _client(answers, seen) as fleet:
        assert fleet.call("echo", {"x": 1}) == {"x": 1}
    assert len(seen) == 2


def test_a_call_that_may_have_run_is_not_sent_again() -> None:
    seen: list[httpx.Request] = []
    with _client([_unavailable(with_id=True)], seen) as fleet, \
            pytest.raises(RpcfleetError) as raised:
        fleet.call("echo", {"x": 1})
    assert (raised.value.code, raised.value.call_id, len(seen)) == ("unavailable", "j1", 1)


def test_retries_stop_after_the_configured_number() -> None:
    seen: list[httpx.Request] = []
    make: Callable[[], httpx.Response] = lambda: _unavailable(with_id=False)  # noqa: E731
    with _client([make() for _ in range(4)], seen) as fleet, pytest.raises(RpcfleetError):
        fleet.call("echo")
    assert len(seen) == 4  # the first and 3 retries
