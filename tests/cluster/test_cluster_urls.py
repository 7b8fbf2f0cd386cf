"""RPCFLEET_AMQP_URL with several nodes (SPEC 1.1): gateways and workers connect to a live one and
move to another when theirs goes. Two private nodes stand in for a cluster's members here."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import httpx
import pytest
from yarl import URL

from rpcfleet.broker import LocalBroker, free_port
from tests.support.fleet import worker_factory
from tests.support.gateway import gateway_factory, wait_for_workers
from tests.support.waiting import async_wait_for, wait_for
from transport.cluster import ClusterConnection, connect_cluster, jittered, node_urls, with_options
from transport.silence import SilenceWatch


def test_the_url_list_is_split_on_commas() -> None:
    assert node_urls("amqp://a/, amqp://b/,") == ["amqp://a/", "amqp://b/"]


@pytest.mark.slow  # a long scenario: in .ci/run's slow step
def test_gateway_and_worker_skip_a_dead_node_and_move_on_when_theirs_goes(
    tmp_path: Path
) -> None:
    nodes = [LocalBroker(directory=tmp_path / name, port=free_port(), name=name)
             for name in ("node-a", "node-b")]
    for node in nodes:
        node.start()
    try:
        nobody = f"amqp://guest:guest@127.0.0.1:{free_port()}/"  # no broker listens there
        url = ",".join([nobody, nodes[0].amqp_url, nodes[1].amqp_url])
        workers = worker_factory(url, tmp_path)
        gateways = gateway_factory(url, tmp_path)
        worker = next(workers)(beat_interval=1, wait=False)
        gateway = next(gateways)()
        wait_for_workers(gateway, 1, timeout=30)
        with gateway.client() as http:
            assert http.post("/v1/rpc/echo", json={"on": "a"}).status_code == 200
            nodes[0].stop()  # the node both use goes away

            def answered() -> bool:
                try:
                    return http.post("/v1/rpc/echo?timeout=2", json={"on": "b"}).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(answered, timeout=60, interval=0.5,
                     what="calls to be answered through the other node")
        assert worker.alive()
    finally:
        for factory in (gateways, workers):
            next(factory, None)
        for node in nodes:
            node.stop()


def test_every_node_is_tried_with_the_connections_options() -> None:
    built = URL("amqp://u:p@a:5672/?heartbeat=4&nodes=amqp://u:p@a:5672/&first=0")
    nodes = with_options(built, ["amqp://u:p@a:5672/", "amqp://u:p@b:5673/"])
    assert [(n.host, n.port, n.query.get("heartbeat")) for n in nodes] == [
        ("a", 5672, "4"), ("b", 5673, "4")]
    assert all("nodes" not in n.query and "first" not in n.query for n in nodes)


def test_reconnect_attempts_are_jittered_around_the_interval() -> None:
    assert ClusterConnection.reconnect_interval.fget is not None  # the pause aio-pika reads
    pauses = {jittered(1.5) for _ in range(50)}
    assert len(pauses) > 1 and all(0.75 <= p <= 2.25 for p in pauses)


def test_a_connect_given_up_midway_leaves_no_reconnect_loop_behind() -> None:
    """A gateway that stops while its first connect is under way (its lifespan failed, or it was
    told to stop) must not keep a connection retrying: aio-pika's robust connection reconnects
    after a cancelled attempt and swallows the cancellation, which hung the gateway's exit."""
    async def scenario() -> set[asyncio.Task[object]]:
        with socket.socket() as silent:  # accepts the TCP connection, never speaks AMQP
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            port = silent.getsockname()[1]
            before = asyncio.all_tasks()
            attempt = asyncio.create_task(connect_cluster(
                f"amqp://guest:guest@127.0.0.1:{port}/", reconnect_interval=0.1, timeout=5))
            await asyncio.sleep(0.3)  # the attempt is waiting for the broker's first frame
            attempt.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await attempt
            me = asyncio.current_task()
            with contextlib.suppress(AssertionError):  # the assertion below says what is left
                await async_wait_for(lambda: not asyncio.all_tasks() - before - {me},
                                     timeout=3, what="aio-pika's tasks to end")
            return asyncio.all_tasks() - before - {me}

    loop = asyncio.new_event_loop()
    left = loop.run_until_complete(scenario())
    assert left == set(), left  # (asyncio.run would hang here, cancelling them)
    loop.close()


async def test_every_connection_and_reconnection_is_watched_for_a_silent_broker(
    amqp_url: str
) -> None:
    """Two heartbeats of hearing nothing leave a node (transport.silence): the watch is on every
    socket the connection opens, its first and each reconnection. How long a silent node takes
    to leave, end to end: tests/cluster/test_partitions.py."""
    connection = await connect_cluster(amqp_url, heartbeat=3)
    try:
        def allowed() -> float:
            underlay = connection.transport.connection  # type: ignore[attr-defined]
            factory = underlay._transport_factory
            assert isinstance(factory, SilenceWatch)
            return factory.silence_s

        assert allowed() == 6.0
        await connection.transport.connection.close()  # type: ignore[attr-defined]
        await async_wait_for(lambda: connection.connected.is_set() and
                             connection.transport is not None, timeout=20,
                             what="the connection to come back")
        assert allowed() == 6.0
    finally:
        await connection.close()


@pytest.mark.parametrize("url", ["localhost:5672", "guest:guest@localhost:5672/",
                                 "amqp:/127.0.0.1:5672", "amqp://127.0.0.1:5672,localhost:5673"])
def test_a_broker_url_without_scheme_or_host_is_an_invalid_setting_at_once(url: str) -> None:
    """aio-pika retries such a URL for ever, as if the broker were down: the command would
    never say what is wrong."""
    import subprocess
    import sys
    import time

    from tests.support.processes import REPO

    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "rpcfleet.cli", "dead", "p", "--amqp-url", url],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "is not an AMQP URL: amqp://user:password@host:5672/vhost" in done.stderr
    assert "Traceback" not in done.stderr and time.monotonic() - started < 30
