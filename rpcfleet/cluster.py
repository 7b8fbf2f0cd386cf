"""A private local RabbitMQ cluster for development and tests: `count` nodes of `LocalBroker` on
loopback, clustered with RabbitMQ's own clustering (`rpcfleet broker --nodes N`), and what the
failover tests ask of it (a queue's leader, the nodes clients use)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from rpcfleet.broker import BrokerError, LocalBroker

# A member cut off from the majority pauses (the setting to use with quorum queues), and peers
# count a silent node gone within about 10-15 s instead of 60-75 (Erlang's default tick time).
CLUSTER_CONFIG = ("cluster_partition_handling = pause_minority",)
NET_TICKTIME_S = 10


@dataclass
class LocalCluster:
    """`count` private nodes on loopback, clustered (RabbitMQ's own clustering): node i listens
    on `port + i`, keeps its state in `directory/node-i`, and all share one Erlang cookie. For
    development and tests of quorum queues and failover; `amqp_url` lists every node."""

    directory: Path
    port: int = 5672
    count: int = 3
    management_port: int | None = None  # on the first node
    nodes: list[LocalBroker] = field(default_factory=list)
    erl_args: tuple[str, ...] = ()  # more emulator flags for every node (benchmarks)

    def __post_init__(self) -> None:
        if not self.nodes:
            self.nodes = [LocalBroker(directory=self.directory / f"node-{i}", port=self.port + i,
                                      management_port=self.management_port if i == 0 else None,
                                      name=f"rpcfleet-{i}", config=CLUSTER_CONFIG,
                                      net_ticktime=NET_TICKTIME_S, erl_args=self.erl_args)
                          for i in range(self.count)]

    @property
    def amqp_url(self) -> str:
        return ",".join(node.amqp_url for node in self.nodes)

    def start(self, timeout: float = 90) -> None:
        cookie_file = self.directory / "cookie"
        self.directory.mkdir(parents=True, exist_ok=True)
        if not cookie_file.exists():
            cookie_file.write_text(secrets.token_hex(20))
        for node in self.nodes:  # one cookie: the nodes (and rabbitmqctl) trust each other
            node.directory.mkdir(parents=True, exist_ok=True)
            target = node.directory / ".erlang.cookie"
            if not target.exists():
                target.write_text(cookie_file.read_text())
                target.chmod(0o400)
        for node in self.nodes:
            node.start(timeout)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            if first.nodename in node.ctl("cluster_status", "--formatter", "json"):
                continue  # a restart of a cluster formed before
            node.ctl("stop_app")
            node.ctl("join_cluster", first.nodename)
            node.ctl("start_app")

    def running_nodes(self) -> list[str]:
        status = json.loads(self._live().ctl("cluster_status", "--formatter", "json"))
        return [str(name) for name in status.get("running_nodes", [])]

    def _live(self) -> LocalBroker:
        """A node that runs, to ask about the cluster (the first may be the one killed)."""
        for node in self.nodes:
            if node.is_running():
                return node
        raise BrokerError("no node of the cluster is running")

    def node_named(self, nodename: str) -> LocalBroker:
        return next(node for node in self.nodes if node.nodename == nodename)

    def queue_leader(self, queue: str, vhost: str = "/") -> LocalBroker:
        """The node that leads a quorum queue now."""
        rows = json.loads(self._live().ctl("list_queues", "-p", vhost, "name", "leader",
                                           "--formatter", "json"))
        leader = next(row["leader"] for row in rows if row["name"] == queue)
        return self.node_named(str(leader))

    def online_members(self, queue: str, vhost: str = "/") -> list[str]:
        rows = json.loads(self._live().ctl("list_queues", "-p", vhost, "name", "online",
                                           "--formatter", "json"))
        return [str(name) for row in rows if row["name"] == queue for name in row["online"]]

    def client_nodes(self, peer: str | None = None) -> list[LocalBroker]:
        """The node of each client connection (by the address and port it connected to); only
        those of clients at address `peer` when given."""
        rows = json.loads(self._live().ctl("list_connections", "host", "port", "peer_host",
                                           "--formatter", "json"))
        by_address = {(node.host, node.port): node for node in self.nodes}
        return [by_address[key] for row in rows
                if (key := (_address(row["host"]), int(row["port"]))) in by_address
                and peer in (None, _address(row["peer_host"]))]

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()


def _address(value: object) -> str:
    """An address as rabbitmqctl's JSON gives it: a string, or the IP's octets in a list."""
    if isinstance(value, list):
        return ".".join(str(octet) for octet in value)
    return str(value)
