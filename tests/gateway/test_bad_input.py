"""Bad input gets a clear JSON error, never a plain-text 500, and grows nothing (SPEC: errors)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from gateway.app import create_app, with_fast_path
from gateway.limits import ConnectionLimit
from gateway.settings import GatewaySettings
from tests.support.gateway import Gateway, StartGateway, error_code, wait_for_workers
from tests.support.waiting import async_wait_for


def test_method_names_are_checked_at_the_edge(start_gateway: StartGateway) -> None:
    gateway = start_gateway()
    with gateway.client() as http:
        answers = [
            http.post("/v1/rpc/" + "m" * 300, json={}),
            http.post("/v1/rpc/" + "é" * 100, json={}),
            http.post("/v1/rpc/a%20b", json={}),
            http.post("/v1/jobs/" + "m" * 300, json={"params": {}}),
        ]
    for answer in answers:
        assert answer.headers["content-type"] == "application/json"
        assert error_code(answer) == (404, "unknown_method"), answer.text
        assert "not a method name" in answer.json()["error"]["message"]


@pytest.mark.parametrize("body", [
    b'{"params": {}, "timeout": 1e300}',
    b'{"params": {}, "timeout": 5184000}',  # 60 days: past AMQP's expiration limit
    b'{"params": {}, "timeout": 1e999}',
    b'{"params": {}, "timeout": -1}',
    b'{"param": {"n": 1}}',  # a typo would run the job without params
    b'{"params": {}, "priority": 99}',
    # A client's bugs, not numbers: lax parsing read true as 1 and "9" as 9.
    b'{"params": {}, "priority": true}',
    b'{"params": {}, "priority": "9"}',
    b'{"params": {}, "timeout": true}',
    b'{"params": {}, "timeout": "30"}',
    b'{"params": {}, "callback_url": 5}',
])
def test_job_bodies_out_of_bounds_or_with_unknown_keys_are_422(
    start_gateway: StartGateway, body: bytes
) -> None:
    gateway = start_gateway()
    with gateway.client() as http:
        answer = http.post("/v1/jobs/echo", content=body,
                           headers={"content-type": "application/json"})
    assert error_code(answer) == (422, "invalid_params"), answer.text


def test_a_job_body_without_its_params_wrapper_says_what_a_job_body_is(
    start_gateway: StartGateway
) -> None:
    gateway = start_gateway()
    with gateway.client() as http:
        answer = http.post("/v1/jobs/echo", json={"id": 3})
    assert error_code(answer) == (422, "invalid_params")
    message = answer.json()["error"]["message"]
    assert message.startswith("unknown key 'id': a job body is {\"params\": {...}}"), message
    assert "pydantic" not in message and "https://" not in message


def test_an_empty_body_is_no_params(gateway: Gateway) -> None:
    with gateway.client() as http:
        called = http.post("/v1/rpc/echo")  # curl -X POST .../v1/rpc/echo, no -d
        submitted = http.post("/v1/jobs/echo", content=b"")
    assert (called.status_code, called.json()["result"]) == (200, {}), called.text
    assert submitted.status_code == 202, submitted.text


def test_an_oversize_chunked_prefetch_body_is_413(start_gateway: StartGateway) -> None:
    gateway = start_gateway(max_body_bytes=1000)
    with gateway.client() as http:
        chunks = iter([b'{"prefetch": 1, "pad": "', b"x" * 2000, b'"}'])
        answer = http.put("/v1/pools/basic/prefetch", content=chunks)
    assert error_code(answer) == (413, "payload_too_large")


def test_metrics_give_unknown_methods_one_label(gateway: Gateway) -> None:
    wait_for_workers(gateway, 1)
    with gateway.client() as http:
        assert http.post("/v1/rpc/echo", json={}).status_code == 200
        for n in range(20):
            assert http.post(f"/v1/rpc/scan_{n}", json={}).status_code == 404
        text = http.get("/metrics").text
    assert 'method="echo"' in text
    assert 'rpcfleet_calls_total{code="unknown_method",method="unknown"} 20.0' in text
    assert "scan_" not in text


async def test_an_unexpected_failure_is_the_json_500_envelope_on_both_front_doors(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """A unit test: a bug injected where a call is published, and a route that raises."""
    app = create_app(GatewaySettings(amqp_url="amqp://guest:guest@127.0.0.1:1/"))

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(app.state.services.view, "has_live_worker", lambda pool: True)
    monkeypatch.setattr(app.state.services.rpc, "call", broken)

    @app.get("/v1/broken")
    async def raises() -> None:
        raise KeyError("a bug")

    transport = httpx.ASGITransport(app=with_fast_path(app), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        fast = await http.post("/v1/rpc/echo", json={})
        routed = await http.get("/v1/broken")
    for answer in (fast, routed):
        assert answer.headers["content-type"] == "application/json"
        assert error_code(answer) == (500, "internal_error")
        assert "a bug" not in answer.text  # what failed, not how


@pytest.mark.parametrize("path", ["/v1/rpc/echo", "/v1/jobs/echo"])
async def test_a_body_that_trickles_in_past_the_body_timeout_is_408(path: str) -> None:
    """A unit test of the app in process: the body's second half never comes in time."""
    app = create_app(GatewaySettings(amqp_url="amqp://guest:guest@127.0.0.1:1/",
                                     body_timeout=0.3))

    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"params": '
        await asyncio.sleep(1.0)  # the client's pace: past the 0.3 s body timeout
        yield b"{}}"

    transport = httpx.ASGITransport(app=with_fast_path(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        started = time.monotonic()
        answer = await http.post(path, content=trickle())
    assert error_code(answer) == (408, "request_timeout")
    assert time.monotonic() - started < 1.0  # cut at the timeout, not when the body ended
    assert "11 bytes received" in answer.json()["error"]["message"]


async def test_requests_over_the_connection_limit_get_a_json_503_and_probes_pass() -> None:
    """A unit test of `gateway.limits.ConnectionLimit` in front of a stand-in app whose
    requests wait until released."""
    release = asyncio.Event()

    async def held(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    limit = ConnectionLimit(held, max_connections=2, retry_after=3)
    transport = httpx.ASGITransport(app=limit)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        holding = [asyncio.ensure_future(http.get("/v1/jobs/x")) for _ in range(2)]
        await async_wait_for(lambda: limit.active == 2, what="two requests in progress")
        refused = await http.post("/v1/rpc/echo", json={})
        probe = asyncio.ensure_future(http.get("/healthz"))  # never refused: it is held too
        await async_wait_for(lambda: limit.active == 2 and not probe.done(),
                             what="the probe to reach the app")
        release.set()
        answers = [await request for request in holding] + [await probe]
    assert error_code(refused) == (503, "overloaded")
    assert refused.headers["retry-after"] == "3"
    assert "RPCFLEET_MAX_CONNECTIONS" in refused.json()["error"]["message"]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert limit.active == 0


def test_a_caller_that_hangs_up_before_its_body_arrives_submits_nothing(
    gateway: Gateway
) -> None:
    """A dropped upload is not an empty body: nothing runs, and the Idempotency-Key stays free
    for the retry (it made a job with params {} and bound the key to the empty body)."""
    host, port = gateway.url.removeprefix("http://").split(":")
    body = b'{"params": {"n": 1}}'
    with socket.create_connection((host, int(port)), timeout=5) as raw:  # closed: hung up
        raw.sendall(f"POST /v1/jobs/echo HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
                    f"application/json\r\nContent-Length: {len(body)}\r\n"
                    "Idempotency-Key: k1\r\n\r\n".encode())
    with gateway.client() as http:
        retried = http.post("/v1/jobs/echo", content=body, headers={
            "Idempotency-Key": "k1", "content-type": "application/json"})
        listed = http.get("/v1/jobs").json()
    assert retried.status_code == 202, retried.text
    assert [job["id"] for job in listed] == [retried.json()["id"]]


def test_a_trace_header_that_is_not_one_is_ignored_and_harms_no_other_call(
    gateway: Gateway
) -> None:
    """W3C: a receiver ignores a traceparent it cannot read. One of 150 KB travelled in the
    AMQP headers, past the broker's frame size, which closed the gateway's connection and
    failed every call on it."""
    with gateway.client() as http:
        slow = threading.Thread(target=lambda: answers.append(
            http.post("/v1/rpc/sleep", json={"seconds": 1.5})))
        answers: list[httpx.Response] = []
        slow.start()
        odd = http.post("/v1/rpc/echo", json={"n": 1},
                        headers={"traceparent": "a" * 150_000, "tracestate": "b" * 600})
        slow.join(timeout=30)
        after = http.post("/v1/rpc/echo", json={"n": 2})
    assert odd.status_code == 200 and odd.json()["result"] == {"n": 1}, odd.text
    assert [a.status_code for a in answers] == [200], [a.text for a in answers]
    assert after.status_code == 200


def test_job_params_nested_past_what_can_be_sent_on_are_422_and_store_nothing(
    start_gateway: StartGateway
) -> None:
    """300 levels parse, but the encoder stops near 254: it was a 500 after the job was stored,
    which left a queued job that never ran (and failed minutes later)."""
    gateway = start_gateway()
    body = b'{"params": ' + b'{"a": ' * 300 + b"1" + b"}" * 300 + b"}"
    with gateway.client() as http:
        answer = http.post("/v1/jobs/echo", content=body,
                           headers={"content-type": "application/json"})
        listed = http.get("/v1/jobs").json()
    assert error_code(answer) == (422, "invalid_params"), answer.text
    assert listed == []


def test_a_job_id_that_is_not_one_is_not_found_before_the_store_sees_it(
    pg_dsn: str, start_gateway: StartGateway
) -> None:
    """PostgreSQL refuses a NUL in a text parameter with an error of its own (a 500 before):
    an id of another form names no job, as any unknown id."""
    import json

    from websockets.sync.client import connect

    gateway = start_gateway(job_store=pg_dsn)
    with gateway.client() as http:
        answers = [http.get("/v1/jobs/a%00b"), http.delete("/v1/jobs/a%00b"),
                   http.get("/v1/jobs/a%00b/events"), http.get("/v1/jobs/" + "Z" * 32)]
        filtered = http.get("/v1/jobs?method=a%00b")
    for answer in answers:
        assert error_code(answer) == (404, "not_found"), answer.text
    assert error_code(filtered) == (422, "invalid_params"), filtered.text
    with connect(gateway.url.replace("http://", "ws://") + "/v1/jobs/ws",
                 open_timeout=10) as socket:
        socket.send(json.dumps({"follow": "a\u0000b"}))
        assert json.loads(socket.recv(timeout=10))["error"]["code"] == "not_found"
    assert "failed unexpectedly" not in gateway.proc.output()
