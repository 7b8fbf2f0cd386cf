"""Job events (SPEC 1.1): every state and progress change in order with its seq, over SSE and
WebSocket alike, replayed from seq 1 for late followers and resumable after a seq."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.fleet import StartWorker
from tests.support.gateway import Gateway, StartGateway, wait_for_workers
from tests.support.jobs import submit, until

KEYS = {"api_keys": "alice,bob", "admin_keys": "root"}


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _ws(gateway: Gateway, path: str) -> str:
    return gateway.url.replace("http://", "ws://") + path


def _frames(url: str, **kwargs: Any) -> tuple[list[dict[str, Any]], int | None]:
    frames = []
    with connect(url, open_timeout=10, **kwargs) as socket:
        try:
            while True:
                frames.append(json.loads(socket.recv(timeout=30)))
        except ConnectionClosed:
            pass
        code = socket.close_code
    return frames, code


def _closed(url: str) -> tuple[int | None, str]:
    """A socket the server closes without a frame: its close code and reason."""
    with connect(url, open_timeout=10) as socket:
        try:
            socket.recv(timeout=30)
        except ConnectionClosed:
            pass
        return socket.close_code, socket.close_reason or ""


def _sse(http: httpx.Client, job_id: str, headers: dict[str, str]) -> list[tuple[int, str]]:
    seen, seq = [], 0
    with http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as stream:
        for line in stream.iter_lines():
            if line.startswith("id: "):
                seq = int(line[4:])
            elif line.startswith("event: "):
                seen.append((seq, line[7:]))
    return seen


def test_a_browser_follows_a_job_over_a_websocket_with_a_token_fetched_with_its_key(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    start_worker()
    gateway = start_gateway(**KEYS)
    wait_for_workers(gateway, 1, headers=_as("root"))
    with gateway.client(headers=_as("alice")) as http:
        job_id = submit(http, "staged", {"release": str(tmp_path / "go")}).json()["id"]
        token = http.post("/v1/tokens").json()["token"]
        (tmp_path / "go").touch()
        until(http, job_id, "succeeded")
        sse = _sse(http, job_id, _as("alice"))
    # No header: what a browser can do (the token stands for alice, for a minute).
    frames, code = _frames(_ws(gateway, f"/v1/jobs/{job_id}/ws?token={token}"))
    assert [(f["seq"], f["event"]) for f in frames] == [
        (1, "queued"), (2, "running"), (3, "progress"), (4, "progress"), (5, "succeeded")]
    assert [(f["job"]["status"], f["job"]["progress"]) for f in frames[2:4]] == [
        ("running", {"fraction": 0.5, "note": "half way"}),
        ("running", {"fraction": 1.0, "note": "done"})]
    assert frames[-1]["job"]["result"] == {"released": True}
    assert code == 1000
    assert sse == [(f["seq"], f["event"]) for f in frames]  # the same sequence over SSE
    resumed, _ = _frames(_ws(gateway, f"/v1/jobs/{job_id}/ws?after=3&token={token}"))
    assert [f["seq"] for f in resumed] == [4, 5]


def test_sse_resumes_after_last_event_id(gateway: Gateway) -> None:
    with gateway.client() as http:
        job_id = submit(http, "echo", {"n": 1}).json()["id"]
        until(http, job_id, "succeeded")
        everything = _sse(http, job_id, {})
        after_first = _sse(http, job_id, {"Last-Event-ID": "1"})
    assert [name for _, name in everything] == ["queued", "running", "succeeded"]
    assert after_first == everything[1:]


def test_a_follower_resuming_at_or_past_a_finished_jobs_end_is_told_at_once_nothing_more_comes(
    gateway: Gateway
) -> None:
    """A browser's EventSource reconnects when a stream ends, with the last id it saw: 204 stops
    it. A socket resuming there closes with 1000 at once, as after the terminal event."""
    with gateway.client() as http:
        job_id = submit(http, "echo", {"n": 1}).json()["id"]
        until(http, job_id, "succeeded")
        last = _sse(http, job_id, {})[-1][0]
        at_end = http.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": str(last)},
                          timeout=5)
        past_end = http.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "99"},
                            timeout=5)
        huge = http.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": str(2**64)},
                        timeout=5)  # past any integer column: still "past the end", not a 500
    assert (at_end.status_code, at_end.content) == (204, b"")
    assert past_end.status_code == 204
    assert huge.status_code == 204, huge.text
    for after in (last, 99, 2**64):
        frames, code = _frames(_ws(gateway, f"/v1/jobs/{job_id}/ws?after={after}"))
        assert (frames, code) == ([], 1000)


def test_sse_data_is_the_job_as_polling_answers_it(gateway: Gateway) -> None:
    with gateway.client() as http:
        job_id = submit(http, "echo", {"n": 1}).json()["id"]
        final = until(http, job_id, "succeeded")
        with http.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
            data = [json.loads(line[6:]) for line in stream.iter_lines()
                    if line.startswith("data: ")]
    assert data[-1] == final  # status_url included
    assert all(job["status_url"] == f"{gateway.url}/v1/jobs/{job_id}" for job in data)


def test_a_socket_refuses_bad_tokens_and_hides_other_callers_jobs(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker()
    gateway = start_gateway(**KEYS)
    with gateway.client() as http:
        job_id = submit(http, "echo", {"n": 1}, headers=_as("alice")).json()["id"]
        bobs = http.post("/v1/tokens", headers=_as("bob")).json()["token"]
    # Closed with a code a browser can read: 1008 not allowed, 4404 no such job for this caller;
    # the reason says the error as the HTTP envelope does ("code: message").
    assert _closed(_ws(gateway, f"/v1/jobs/{job_id}/ws?token=1.-.0.forged"))[0] == 1008
    code, reason = _closed(_ws(gateway, f"/v1/jobs/{job_id}/ws"))  # no key, no token
    assert code == 1008 and reason.startswith("unauthorized: "), reason
    code, reason = _closed(_ws(gateway, f"/v1/jobs/{job_id}/ws?token={bobs}"))
    assert code == 4404 and reason.startswith("not_found: "), reason
    code, reason = _closed(_ws(gateway, "/v1/jobs/ws"))  # the many-jobs socket alike
    assert code == 1008 and reason.startswith("unauthorized: "), reason


def test_one_socket_follows_many_jobs(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker()
    gateway = start_gateway(ws_follow_max=3)
    with gateway.client() as http:
        ids = [submit(http, "echo", {"n": n}).json()["id"] for n in range(3)]
        sleepers = [submit(http, "sleep", {"seconds": 2}).json()["id"] for _ in range(4)]
    seen: dict[str, list[str]] = {job_id: [] for job_id in ids}
    errors = []
    with connect(_ws(gateway, "/v1/jobs/ws"), open_timeout=10) as socket:
        for job_id in [*ids, "0" * 32]:
            socket.send(json.dumps({"follow": job_id}))
        while any(not events or events[-1] != "succeeded" for events in seen.values()) \
                or not errors:
            frame = json.loads(socket.recv(timeout=30))
            if "error" in frame:
                errors.append(frame["error"])
            else:
                seen[frame["job"]["id"]].append(frame["event"])
        # A job that ended frees its place: three more may be followed, not a fourth
        # (RPCFLEET_WS_FOLLOW_MAX bounds what one socket costs the gateway).
        for job_id in sleepers:
            socket.send(json.dumps({"follow": job_id}))
        while len(errors) < 2:
            frame = json.loads(socket.recv(timeout=30))
            if "error" in frame:
                errors.append(frame["error"])
            else:
                assert frame["job"]["id"] in sleepers[:3]
    assert all(events == ["queued", "running", "succeeded"] for events in seen.values()), seen
    assert errors[0] == {"code": "not_found", "message": f"no job {'0' * 32!r}", "id": "0" * 32}
    assert errors[1]["code"] == "overloaded" and errors[1]["id"] == sleepers[3]
    assert "RPCFLEET_WS_FOLLOW_MAX" in errors[1]["message"]


def test_only_a_job_still_running_after_a_moment_sends_a_start_event(
    amqp_url: str, start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    """A job that ends within STARTED_EVENT_AFTER_S costs no start event (one message and one
    store write less); its reply puts `running` in its log all the same. A longer one is seen
    running while it runs, stamped with when it started."""
    import asyncio
    import threading

    import aio_pika

    from protocol import names

    heard: list[str] = []
    listening, stop = threading.Event(), threading.Event()

    async def listen() -> None:
        async with await aio_pika.connect(amqp_url) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(names.EVENTS_EXCHANGE, routing_key="job.*.started")

            async def hear(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                heard.append(message.routing_key or "")

            await queue.consume(hear, no_ack=True)
            listening.set()
            await asyncio.to_thread(stop.wait, 120)  # until the test has seen what it needs

    start_worker()
    gateway = start_gateway()
    wait_for_workers(gateway, 1)  # the events exchange is declared by now
    listener = threading.Thread(target=asyncio.run, args=(listen(),), daemon=True)
    listener.start()
    assert listening.wait(10)
    with gateway.client() as http:
        quick = submit(http, "echo", {"n": 1}).json()["id"]
        slow = submit(http, "sleep", {"seconds": 0.6}).json()["id"]
        running = until(http, slow, "running", "succeeded")
        until(http, quick, "succeeded")
        done = until(http, slow, "succeeded")
        quick_log = [event for _, event in _sse(http, quick, {})]
    stop.set()
    listener.join(10)
    assert heard == [names.job_event_key(slow, "started")]
    assert running["status"] == "running"  # seen while it ran, from its start event
    assert running["started_at"] <= done["finished_at"]
    assert quick_log == ["queued", "running", "succeeded"]


def test_a_follower_whose_client_left_frees_its_place_at_once(
    start_worker: StartWorker, start_gateway: StartGateway, tmp_path: Path
) -> None:
    """A socket on a job that has no next event for a long while (queued behind a busy worker):
    its client leaves; the follower must not hold its connection slot until the job moves.
    And an SSE client leaving mid-stream is not an error of the gateway's."""
    from tests.support.jobs import occupy

    start_worker()
    gateway = start_gateway(max_connections=2)
    wait_for_workers(gateway, 1)
    with gateway.client() as http:
        occupy(http, tmp_path / "busy", seconds=30)
        waiting = submit(http, "echo", {"n": 1}).json()["id"]
    with connect(_ws(gateway, f"/v1/jobs/{waiting}/ws"), open_timeout=10) as socket:
        assert json.loads(socket.recv(timeout=10))["event"] == "queued"
    with httpx.Client(base_url=gateway.url, timeout=10) as http, \
            http.stream("GET", f"/v1/jobs/{waiting}/events") as stream:
        assert any(line.startswith("event: queued") for line in stream.iter_lines()
                   if line.startswith("event: "))
    # Both places free again: two requests at once are served (max_connections=2).
    from concurrent.futures import ThreadPoolExecutor

    from tests.support.waiting import wait_for

    def both_served() -> bool:
        with ThreadPoolExecutor(2) as pool, httpx.Client(base_url=gateway.url,
                                                           timeout=10) as http:
            answers = list(pool.map(lambda _: http.get(f"/v1/jobs/{waiting}"), range(2)))
        return all(answer.status_code == 200 for answer in answers)

    wait_for(both_served, timeout=5, what="the left clients' places to be free")
    output = gateway.proc.output()
    assert "failed unexpectedly" not in output and "Exception in ASGI" not in output, output


def test_a_socket_answers_a_command_it_cannot_read_and_stays_open(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker()
    gateway = start_gateway()
    with gateway.client() as http:
        job_id = submit(http, "echo", {"n": 1}).json()["id"]
        until(http, job_id, "succeeded")
    errors, events = [], []
    with connect(_ws(gateway, "/v1/jobs/ws"), open_timeout=10) as socket:
        socket.send(b"\x00binary")
        socket.send("{not json")
        socket.send(json.dumps({"follow": job_id, "after": "abc"}))
        socket.send(json.dumps({"follow": job_id}))
        while not events or events[-1] != "succeeded":
            frame = json.loads(socket.recv(timeout=30))
            if "error" in frame:
                errors.append(frame["error"])
            else:
                events.append(frame["event"])
    assert [error["code"] for error in errors] == ["invalid_params"] * 3, errors
    assert "text frames" in errors[0]["message"] and "JSON" in errors[1]["message"]
    assert "after must be an integer" in errors[2]["message"]
    assert events == ["queued", "running", "succeeded"]
    code, reason = _closed(_ws(gateway, f"/v1/jobs/{job_id}/ws?after=abc"))
    assert code == 1008 and reason.startswith("invalid_params"), (code, reason)
    assert "failed unexpectedly" not in gateway.proc.output()
