"""Session fixtures: one private RabbitMQ node (installed when missing), a fresh vhost per test."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rpcfleet.broker import LocalBroker, free_port
from tests.support.browser import browser
from tests.support.fleet import start_worker
from tests.support.gateway import gateway, start_gateway
from tests.support.postgres import PostgresServer, private_server
from tests.support.rabbit import Vhost, create_vhost, delete_vhost
from tests.support.receiver import receiver
from tests.support.stores import stores

# Fixtures defined in tests/support, registered here once for every test folder.
__all__ = ["browser", "gateway", "receiver", "start_gateway", "start_worker", "stores"]


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    node = LocalBroker(
        directory=Path(tmp_path_factory.mktemp("rabbit")),
        port=free_port(),
        management_port=free_port(),
        name="rpcfleet-test",
    )
    node.start()
    yield node
    node.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One private PostgreSQL server for the session (started on first use: ~3 s)."""
    folder = Path(tempfile.mkdtemp(prefix="rpcfleet-pg-"))  # postgres must reach it
    os.chmod(folder, 0o755)
    yield from private_server(folder)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_dsn(postgres: PostgresServer) -> str:
    """A fresh database of the session's server."""
    return postgres.create_database()


@pytest.fixture
def vhost(broker: LocalBroker) -> Iterator[Vhost]:
    host = create_vhost(broker)
    yield host
    delete_vhost(host)


@pytest.fixture
def amqp_url(vhost: Vhost) -> str:
    return vhost.amqp_url


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build their settings explicitly: no RPCFLEET_* from the caller's shell leaks in."""
    for key in list(os.environ):
        if key.startswith("RPCFLEET_"):
            monkeypatch.delenv(key)
