"""Errors a handler means, and errors it does not (SPEC 1.2, "Errors a handler means").

`raise CallError("not_found", "...", status=404)` answers the call (or ends the job) with that
code, status and details, through the gateway and `rpcfleet.client`, and is not a failure of the
worker: no traceback in its log, not counted as failed, one `call_error` label in the metrics.
Anything else a handler raises stays `worker_error`, and the worker logs it with its traceback,
the call id and the method."""

from __future__ import annotations

import httpx
import pytest

from rpcfleet.client import Client, RpcfleetError
from tests.support.fleet import StartWorker
from tests.support.gateway import Gateway, StartGateway, wait_for_workers
from tests.support.waiting import wait_for
from workers import CallError
from workers.testing import MethodFailed, PoolTester

NOT_FOUND = {"code": "not_found", "message": "no product 999", "status": 404,
             "details": {"id": 999}}


def test_an_error_the_handler_means_is_answered_with_its_code_status_and_details(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    worker = start_worker()
    gateway = start_gateway()
    wait_for_workers(gateway, 1)  # metrics label only methods the fleet announced
    with gateway.client() as http:
        answer = http.post("/v1/rpc/refuse", json=NOT_FOUND)
        assert answer.status_code == 404
        error = answer.json()["error"]
        assert (error["code"], error["message"], error["details"]) == (
            "not_found", "no product 999", {"id": 999})
        assert error["id"]  # the call's id, as every error of a call carries
        # Typed in the client: the application's code, status and details.
        with Client(gateway.url) as fleet, pytest.raises(RpcfleetError) as raised:
            fleet.call("refuse", {"code": "out_of_stock", "status": 409})
        assert (raised.value.status, raised.value.code, raised.value.details) == (
            409, "out_of_stock", None)
        assert not raised.value.retryable
        counted = 'rpcfleet_calls_total{code="call_error",method="refuse"} 2.0'
        wait_for(lambda: counted in http.get("/metrics").text, timeout=5,
                 what="both calls counted as call_error",
                 detail=lambda: "\n".join(line for line in http.get("/metrics").text.splitlines()
                                          if line.startswith("rpcfleet_calls_total")))
        # Not a failure of the worker: nothing counted as failed, no traceback logged.
        wait_for(lambda: wait_for_workers(gateway, 1)[0]["processed"] >= 2, timeout=10,
                 what="the worker's beat to count the two calls")
        assert wait_for_workers(gateway, 1)[0]["failed"] == 0
    assert "Traceback" not in worker.output()


def test_a_job_ended_by_a_call_error_fails_with_it(gateway: Gateway) -> None:
    with Client(gateway.url) as fleet:
        # Its code says "cancelled", yet it is the handler's answer: the job failed.
        job = fleet.submit("refuse", {"code": "cancelled", "status": 409, "details": [1, 2]})
        done = fleet.wait(job.id, timeout=30)
    assert done.status == "failed"
    assert done.error is not None
    assert done.error.model_dump() == {"code": "cancelled", "message": "refused",
                                       "status": 409, "details": [1, 2]}


def test_any_other_exception_is_a_worker_error_logged_with_its_traceback_id_and_method(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    worker = start_worker()
    gateway = start_gateway()
    answer = httpx.post(f"{gateway.url}/v1/rpc/boom", json={"why": "disk on fire"}, timeout=30)
    assert answer.status_code == 500
    error = answer.json()["error"]
    assert error["code"] == "worker_error" and "details" not in error
    wait_for(lambda: f"boom {error['id']} failed: RuntimeError: boom: disk on fire"
             in worker.output(), timeout=10, what="the handler's error in the worker's log",
             detail=worker.output)
    logged = worker.output().split(f"boom {error['id']} failed")[1]
    assert "Traceback (most recent call last)" in logged
    assert 'in boom\n    raise RuntimeError(f"boom:' in logged  # the handler's own frame
    wait_for(lambda: wait_for_workers(gateway, 1)[0]["failed"] == 1, timeout=10,
             what="the beat to count the failure")


def test_a_worker_log_level_of_warning_still_logs_handler_errors(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    worker = start_worker(extra=("--log-level", "warning"))
    gateway = start_gateway()
    answer = httpx.post(f"{gateway.url}/v1/rpc/boom", json={"why": "quiet"}, timeout=30)
    wait_for(lambda: f"boom {answer.json()['error']['id']} failed" in worker.output(),
             timeout=10, what="the handler's error in the worker's log", detail=worker.output)
    assert " INFO " not in worker.output()  # the start-up lines are INFO: gone


@pytest.mark.parametrize(("code", "status", "details"), [
    ("Not Found", 404, None),  # the code's shape
    ("9lives", 404, None),
    ("x" * 65, 404, None),
    ("not_found", 500, None),  # a server error is not an answer the handler means
    ("not_found", 200, None),
    ("not_found", 404, object()),  # details must be JSON
])
def test_a_call_error_that_the_contract_does_not_allow_is_refused_where_it_is_made(
    code: str, status: int, details: object
) -> None:
    with pytest.raises(ValueError, match="CallError"):
        CallError(code, "message", status=status, details=details)


def test_the_testing_kit_shows_a_call_error_and_the_frame_of_any_other_exception() -> None:
    from tests.pools.basic import pool

    tester = PoolTester(pool)
    with pytest.raises(MethodFailed) as meant:
        tester.call("refuse", NOT_FOUND)
    assert (meant.value.code, meant.value.status, meant.value.details) == (
        "not_found", 404, {"id": 999})
    with pytest.raises(MethodFailed) as failed:
        tester.call("boom", {"why": "here"})
    assert failed.value.code == "worker_error"
    assert isinstance(failed.value.__cause__, RuntimeError)  # pytest shows the handler's frame
