"""compose.cluster.yaml cannot be run here (no Docker engine): read it and hold it to the CLI, the
settings and itself (the node list, the cluster's members, the proxy's upstreams, the store)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

import pytest

from gateway.settings import GatewaySettings
from rpcfleet.cli import build_parser
from tests.support.compose import KNOWN_EXTRA_ENV, REPO, command, load
from transport.cluster import node_urls
from workers import load_pool
from workers.settings import WorkerSettings

NODES = ("rabbitmq-1", "rabbitmq-2", "rabbitmq-3")
GATEWAYS = ("gateway-1", "gateway-2")
WORKERS = ("workers-1", "workers-2")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load("compose.cluster.yaml")


def _config(compose: dict[str, Any], name: str) -> str:
    return str(compose["configs"][name]["content"])


def test_the_stack_has_three_nodes_a_database_two_gateways_a_proxy_and_two_worker_hosts(
    compose: dict[str, Any]
) -> None:
    assert set(compose["services"]) == {*NODES, "postgres", *GATEWAYS, "proxy", *WORKERS}
    for node in NODES:
        service = compose["services"][node]
        assert re.fullmatch(r"rabbitmq:\d+\.\d+\.\d+-management", service["image"])
        assert service["hostname"] == node and "healthcheck" in service
        volume = next(v for v in service["volumes"] if v.endswith(":/var/lib/rabbitmq"))
        assert volume.split(":")[0] in compose["volumes"]  # its data survives recreation
        targets = {c["target"] for c in service["configs"]}
        assert {"/etc/rabbitmq/rabbitmq.conf", "/var/lib/rabbitmq/.erlang.cookie"} <= targets


def test_the_nodes_form_one_cluster_that_pauses_a_minority(compose: dict[str, Any]) -> None:
    conf = _config(compose, "rabbitmq-conf")
    listed = re.findall(r"^cluster_formation\.classic_config\.nodes\.\d+ = rabbit@(\S+)$", conf,
                        re.MULTILINE)
    assert tuple(listed) == NODES
    assert "cluster_formation.peer_discovery_backend = classic_config" in conf
    assert "cluster_partition_handling = pause_minority" in conf
    assert "consumer_timeout = 86400000" in conf
    # The 10 s net tick docs/operations.md asks for, on the nodes and their CLI tools alike.
    for node in NODES:
        environment = compose["services"][node]["environment"]
        assert environment["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] == "-kernel net_ticktime 10"
        assert environment["RABBITMQ_CTL_ERL_ARGS"] == "-kernel net_ticktime 10"


def test_every_client_lists_every_node_with_the_brokers_user_and_uses_quorum_queues(
    compose: dict[str, Any]
) -> None:
    rabbit = compose["services"]["rabbitmq-1"]["environment"]
    for name in (*GATEWAYS, *WORKERS):
        env = compose["services"][name]["environment"]
        urls = [urlparse(url) for url in node_urls(env["RPCFLEET_AMQP_URL"])]
        assert tuple(url.hostname for url in urls) == NODES
        assert all((url.port or 5672) == 5672 for url in urls)
        assert {(url.username, url.password) for url in urls} == {
            (rabbit["RABBITMQ_DEFAULT_USER"], rabbit["RABBITMQ_DEFAULT_PASS"])}
        assert env["RPCFLEET_QUEUE_TYPE"] == "quorum"


def test_both_gateways_share_the_postgresql_store(compose: dict[str, Any]) -> None:
    database = compose["services"]["postgres"]["environment"]
    for name in GATEWAYS:
        service = compose["services"][name]
        store = urlparse(service["environment"]["RPCFLEET_JOB_STORE"])
        assert store.scheme == "postgresql" and store.hostname == "postgres"
        assert (store.username, store.password, store.path.lstrip("/")) == (
            database["POSTGRES_USER"], database["POSTGRES_PASSWORD"], database["POSTGRES_DB"])
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert all(service["depends_on"][node]["condition"] == "service_healthy"
                   for node in NODES)
    assert 'pip install ".[examples,postgres]"' in (REPO / "Dockerfile").read_text()


def test_every_command_parses_with_the_real_cli_and_the_proxy_reaches_every_gateway(
    compose: dict[str, Any]
) -> None:
    parser = build_parser()
    ports = set()
    for name in GATEWAYS:
        gateway = parser.parse_args(command(compose["services"][name])[1:])
        assert gateway.command == "gateway" and gateway.host == "0.0.0.0"
        ports.add(gateway.port)
    for name in WORKERS:
        worker = parser.parse_args(command(compose["services"][name])[1:])
        assert worker.command == "worker" and load_pool(worker.target).name == "vectors"
    caddyfile = _config(compose, "caddyfile")
    upstreams = re.search(r"reverse_proxy ([^{]+)\{", caddyfile)
    assert upstreams is not None
    assert upstreams.group(1).split() == [f"{name}:{port}" for name in GATEWAYS for port in ports]
    assert "health_uri /readyz" in caddyfile
    listen = re.match(r"\s*:(\d+) \{", caddyfile)
    assert listen is not None
    assert compose["services"]["proxy"]["ports"] == [f"127.0.0.1:{listen.group(1)}:"
                                                     f"{listen.group(1)}"]


def test_every_setting_named_in_the_environment_exists(compose: dict[str, Any]) -> None:
    fields = set(GatewaySettings.model_fields) | set(WorkerSettings.model_fields)
    for name in (*GATEWAYS, *WORKERS):
        for key in compose["services"][name]["environment"]:
            if key in KNOWN_EXTRA_ENV:
                continue
            assert key.removeprefix("RPCFLEET_").lower() in fields, f"{name}: unknown {key}"
