"""The private broker the suite stands on: real AMQP handshake, isolated vhosts."""

import asyncio
import os
import re
import subprocess

import aio_pika

from rpcfleet.broker import LocalBroker
from tests.support.rabbit import Vhost


def test_a_fresh_vhost_accepts_an_amqp_connection_and_counts_queues_live(vhost: Vhost) -> None:
    async def declare() -> None:
        connection = await aio_pika.connect(vhost.amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue("probe", durable=True)
            await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key=queue.name)

    asyncio.run(declare())
    assert vhost.queue_counts("probe") == (1, 0, 0)


def test_the_broker_rpcfleet_starts_makes_classic_queues_version_2(vhost: Vhost) -> None:
    """`classic_queue.default_version = 2` (docs/operations.md): persistent jobs cost less."""

    async def declare() -> None:
        connection = await aio_pika.connect(vhost.amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue("replies-like", durable=True)

    asyncio.run(declare())
    status = vhost.broker.ctl("eval", "[rabbit_amqqueue:info(Q, [backing_queue_status]) || Q <- "
                              f"rabbit_amqqueue:list(<<\"{vhost.name}\">>)].")
    assert "{version,2}" in status.replace(" ", "")


def _listening(pids: set[int]) -> set[str]:
    """Local addresses (host:port) the given processes listen on, from `ss`."""
    table = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = set()
    for line in table.splitlines():
        owners = {int(pid) for pid in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            found.add(line.split()[3])
    return found


def _node_pids(broker: LocalBroker) -> set[int]:
    """The node's processes: beam and what it started (epmd runs on its own)."""
    beam = int(broker.pid_file.read_text().strip())
    group = os.getpgid(beam)
    pids = {int(p) for p in os.listdir("/proc") if p.isdigit()}
    return {pid for pid in pids if _group_of(pid) == group} | _epmd()


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _epmd() -> set[int]:
    done = subprocess.run(["pgrep", "-x", "epmd"], capture_output=True, text=True)
    return {int(pid) for pid in done.stdout.split()}


def test_the_private_broker_listens_on_loopback_only(broker: LocalBroker) -> None:
    """AMQP, management, Erlang distribution and epmd: nothing on another interface (issue 28:
    distribution listened on every interface, guarded by the cookie alone)."""
    listening = _listening(_node_pids(broker))
    ports = {address.rsplit(":", 1)[1] for address in listening}
    expected = {str(broker.port), str(broker.dist_port), str(broker.management_port)}
    assert expected <= ports, listening
    assert all(address.rsplit(":", 1)[0] in ("127.0.0.1", "[::1]") for address in listening), \
        listening
