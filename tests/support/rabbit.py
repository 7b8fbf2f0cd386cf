"""The broker as tests see it: a private node, one vhost per test, live figures from rabbitmqctl."""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

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
