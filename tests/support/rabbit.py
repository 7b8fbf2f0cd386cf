"""The broker as tests see it: a private node, one vhost per test, live figures from rabbitmqctl."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

from rpcfleet.broker import LocalBroker


def _management(broker: LocalBroker, method: str, path: str, body: Any = None) -> Any:
    assert broker.management_url is not None
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(broker.management_url + path, data=data, method=method)
    request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=15) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


@dataclass
class Vhost:
    """An isolated vhost of the session's node: its own exchanges, queues and replies queue."""

    broker: LocalBroker
    name: str

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.broker.port}/{self.name}"

    def list_queues(self, *columns: str) -> dict[str, list[str]]:
        """Live figures (not the lagging management stats): name -> the other columns."""
        out = self.broker.ctl("list_queues", "-p", self.name, "-q", "--no-table-headers",
                              "name", *columns)
        rows: dict[str, list[str]] = {}
        for line in out.splitlines():
            parts = line.split("\t")
            if parts and parts[0]:
                rows[parts[0]] = parts[1:]
        return rows

    def queue_counts(self, queue: str) -> tuple[int, int, int]:
        """(ready, unacked, consumers) of one queue, live."""
        row = self.list_queues("messages_ready", "messages_unacknowledged", "consumers").get(queue)
        if row is None:
            return (0, 0, 0)
        return (int(row[0]), int(row[1]), int(row[2]))

    def management(self, method: str, path: str, body: Any = None) -> Any:
        return _management(self.broker, method, path, body)


def create_vhost(broker: LocalBroker) -> Vhost:
    name = "t-" + uuid.uuid4().hex[:12]
    _management(broker, "PUT", f"/api/vhosts/{name}", {})
    _management(broker, "PUT", f"/api/permissions/{name}/guest",
                {"configure": ".*", "write": ".*", "read": ".*"})
    return Vhost(broker, name)


def delete_vhost(vhost: Vhost) -> None:
    _management(vhost.broker, "DELETE", f"/api/vhosts/{vhost.name}")



def _channels_expr(vhost: Vhost, connection_name: str) -> str:
    """Erlang: `Chs`, the vhost's channels on connections whose name starts with
    `connection_name`."""
    return (
        "Name = fun(C) -> Props = proplists:get_value(client_properties, "
        "rabbit_networking:connection_info(C, [client_properties]), []), "
        'case lists:keyfind(<<"connection_name">>, 1, Props) of '
        '{_, _, N} -> binary_to_list(N); false -> "" end end, '
        "Chs = [P || P <- rabbit_channel:list_local(), "
        "[{vhost, V}, {connection, C}] <- [rabbit_channel:info(P, [vhost, connection])], "
        f'V =:= <<"{vhost.name}">>, lists:prefix("{connection_name}", Name(C))], '
    )


def close_channels(vhost: Vhost, connection_name: str = "") -> int:
    """Have the broker close the vhost's channels (of connections whose name starts with
    `connection_name`) as it does for a double ack: 406 PRECONDITION_FAILED, connection kept.
    Returns how many it closed."""
    expr = (_channels_expr(vhost, connection_name)
            + "[rabbit_channel:do(P, {'basic.ack', 987654321, false}) || P <- Chs], length(Chs).")
    return int(vhost.broker.ctl("eval", expr).strip())


def open_channels(vhost: Vhost, connection_name: str = "") -> int:
    """How many channels the broker holds open on the vhost's connections whose name starts
    with `connection_name`."""
    return int(vhost.broker.ctl("eval", _channels_expr(vhost, connection_name)
                                + "length(Chs).").strip())


def set_broker_env(vhost: Vhost, key: str, value: int) -> None:
    """Change a `rabbit` application setting at run time (channels read some when they open)."""
    vhost.broker.ctl("eval", f"application:set_env(rabbit, {key}, {value}).")


def memory_alarm(vhost: Vhost) -> bool:
    return "memory" in vhost.broker.ctl("eval", "rabbit_alarm:get_alarms().")


@contextmanager
def blocked_broker(vhost: Vhost) -> Iterator[None]:
    """A memory alarm (a watermark of 0 raises it at once): the node stops reading publishing
    connections, so no publish is confirmed until it clears on leaving."""
    from tests.support.waiting import wait_for

    vhost.broker.ctl("set_vm_memory_high_watermark", "0")
    try:
        wait_for(lambda: memory_alarm(vhost), what="the memory alarm")
        yield
    finally:
        vhost.broker.ctl("set_vm_memory_high_watermark", "0.4")
        wait_for(lambda: not memory_alarm(vhost), what="the alarm to clear")


def crash(node: LocalBroker) -> None:
    """SIGKILL the node, as a crash or an OOM kill would: no clean shutdown. `node.start()`
    brings it back on its data directory."""
    import os
    import signal

    from tests.support.waiting import wait_for

    pid = int(node.pid_file.read_text().strip())
    os.kill(pid, signal.SIGKILL)

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, timeout=30, what=f"the node (pid {pid}) to die")
    node.pid_file.unlink(missing_ok=True)
    if node._process is not None:
        node._process.wait(timeout=30)
        node._process = None


DEFAULT_CONSUMER_TIMEOUT_MS = 86_400_000  # what rpcfleet.broker configures
DEFAULT_TICK_MS = 60_000


@contextmanager
def short_consumer_timeout(vhost: Vhost, timeout_ms: int = 2000) -> Iterator[None]:
    """The node closes a channel whose delivery stays unacked past `timeout_ms` (checked every
    0.2 s), then goes back to rpcfleet's 24 h."""
    set_broker_env(vhost, "consumer_timeout", timeout_ms)
    set_broker_env(vhost, "channel_tick_interval", 200)
    try:
        yield
    finally:
        set_broker_env(vhost, "consumer_timeout", DEFAULT_CONSUMER_TIMEOUT_MS)
        set_broker_env(vhost, "channel_tick_interval", DEFAULT_TICK_MS)


class UnackedSample(NamedTuple):
    began: float  # monotonic: the broker was asked after this...
    ended: float  # ...and answered before this
    unacked: int


@contextmanager
def sample_unacked(vhost: Vhost, queue: str) -> Iterator[list[UnackedSample]]:
    """Sample a queue's live unacked count (rabbitmqctl, not the lagging management stats)
    from a thread, back to back, until the block ends."""
    samples: list[UnackedSample] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            began = time.monotonic()
            unacked = vhost.queue_counts(queue)[1]
            samples.append(UnackedSample(began, time.monotonic(), unacked))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(timeout=30)
