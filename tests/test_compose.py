"""compose.yaml cannot be run here (no Docker engine): read it and hold it to the CLI it calls."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

import pytest

from gateway.settings import GatewaySettings
from rpcfleet.cli import build_parser
from tests.support.compose import KNOWN_EXTRA_ENV, REPO, command, load
from workers import load_pool
from workers.settings import WorkerSettings


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load("compose.yaml")


def test_the_stack_has_a_pinned_rabbitmq_a_gateway_and_the_example_pool(
    compose: dict[str, Any]
) -> None:
    services = compose["services"]
    assert set(services) == {"rabbitmq", "gateway", "workers"}
    image = services["rabbitmq"]["image"]
    assert re.fullmatch(r"rabbitmq:\d+\.\d+\.\d+-management", image), image
    assert "healthcheck" in services["rabbitmq"]


def test_the_broker_keeps_its_data_across_recreation(compose: dict[str, Any]) -> None:
    broker = compose["services"]["rabbitmq"]
    assert broker["hostname"]  # RabbitMQ's data folder is named after the host
    volume = next(v for v in broker["volumes"] if v.endswith(":/var/lib/rabbitmq"))
    assert volume.split(":")[0] in compose["volumes"]


def test_services_start_after_the_broker_is_healthy(compose: dict[str, Any]) -> None:
    for name in ("gateway", "workers"):
        depends = compose["services"][name]["depends_on"]
        assert depends["rabbitmq"]["condition"] == "service_healthy"


def test_every_command_parses_with_the_real_cli(compose: dict[str, Any]) -> None:
    parser = build_parser()
    gateway = parser.parse_args(command(compose["services"]["gateway"])[1:])
    worker = parser.parse_args(command(compose["services"]["workers"])[1:])
    assert gateway.command == "gateway" and worker.command == "worker"
    assert load_pool(worker.target).name == "vectors"
    assert gateway.host == "0.0.0.0"  # reachable from the published port
    published = compose["services"]["gateway"]["ports"][0]
    assert published.endswith(f":{gateway.port}")


def test_every_setting_named_in_the_environment_exists(compose: dict[str, Any]) -> None:
    fields = set(GatewaySettings.model_fields) | set(WorkerSettings.model_fields)
    for name in ("gateway", "workers"):
        for key in compose["services"][name]["environment"]:
            if key in KNOWN_EXTRA_ENV:
                continue
            assert key.startswith("RPCFLEET_"), key
            assert key.removeprefix("RPCFLEET_").lower() in fields, f"{name}: unknown {key}"


def test_the_amqp_url_points_at_the_broker_service_with_its_own_user(
    compose: dict[str, Any]
) -> None:
    rabbit = compose["services"]["rabbitmq"]["environment"]
    for name in ("gateway", "workers"):
        url = urlparse(compose["services"][name]["environment"]["RPCFLEET_AMQP_URL"])
        assert url.hostname == "rabbitmq" and (url.port or 5672) == 5672
        assert url.username == rabbit["RABBITMQ_DEFAULT_USER"] != "guest"
        assert url.password == rabbit["RABBITMQ_DEFAULT_PASS"]


def test_the_image_installs_every_package_and_the_workers_import_the_example_from_source(
    compose: dict[str, Any]
) -> None:
    import tomllib

    dockerfile = (REPO / "Dockerfile").read_text()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    installed = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [pattern.rstrip("*") for pattern in installed]
    assert "examples" not in packages  # source, not an installed package
    for package in (*packages, "examples"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert 'pip install ".[examples,postgres]"' in dockerfile  # numpy; psycopg for PostgreSQL
    workdir = re.search(r"^WORKDIR (\S+)", dockerfile, re.MULTILINE)
    assert workdir is not None
    worker = build_parser().parse_args(command(compose["services"]["workers"])[1:])
    assert worker.app_dir == workdir.group(1)  # where the image copied examples/


def test_the_build_context_leaves_out_local_state_but_nothing_the_image_copies() -> None:
    """No .venv, caches or `.rpcfleet` (broker data with its Erlang cookie, mode 0400) in the
    build context: slow builds, and a root-owned cookie can fail another user's build."""
    import fnmatch

    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for local in (".venv", ".rpcfleet", ".mypy_cache", ".git"):
        assert local in ignored, local
    copied = re.findall(r"^COPY (.+) \./", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    for source in (part for line in copied for part in line.split()):
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source
