"""Two job stores never share one id (issue 22, #7).

A store's id names its gateways' replies queue. A copied state directory, or a database restored
from a dump beside the original, carries the original's id: two stores would then take and drop
each other's replies on the shared broker. Each store keeps the identity of the instance its id
was made in (the SQLite file's, the PostgreSQL database's) and a gateway refuses to start on a
store whose instance is not that one, saying why and what to do. Gateways sharing one PostgreSQL
database, or restarting on the same state directory, share its id as before."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import psycopg
import pytest

from tests.support.gateway import Gateway, StartGateway
from tests.support.rabbit import Vhost
from tests.support.waiting import wait_for

COPY_REFUSED = re.compile(r"job store .* was copied")


def _refused(gateway: Gateway) -> str:
    """The gateway's output once it has exited, refusing to start: one line, no traceback."""
    code = gateway.proc.wait(timeout=60)
    output = gateway.proc.output()
    assert code == 2, output
    assert "Traceback" not in output, output
    return output


def _replies_queues(vhost: Vhost) -> set[str]:
    """The replies queues on the broker: one per job store whose gateways have started."""
    return {queue["name"] for queue in vhost.management("GET", f"/api/queues/{vhost.name}")
            if queue["name"].startswith("rpcfleet.replies.")}


def _replies_queues_once(vhost: Vhost, count: int) -> set[str]:
    """The replies queues once there are `count` of them: a gateway declares its store's as its
    recorder starts, which may come just after the gateway answers ready."""
    wait_for(lambda: len(_replies_queues(vhost)) == count, timeout=20,
             what=f"{count} replies queue(s) on the broker")
    return _replies_queues(vhost)


def test_a_copied_state_directory_refuses_to_start_until_it_gets_its_own_id(
    vhost: Vhost, start_gateway: StartGateway, tmp_path: Path
) -> None:
    original = tmp_path / "state"
    start_gateway(state_dir=original).proc.stop()
    first = _replies_queues_once(vhost, 1)
    # The same directory again: the same store, the same queue.
    start_gateway(state_dir=original).proc.stop()
    assert _replies_queues(vhost) == first

    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    copied = start_gateway(state_dir=copy, ready=False)
    output = _refused(copied)
    assert COPY_REFUSED.search(output), output
    assert str(copy / "jobs.id") in output  # and what to remove to give it an id of its own

    (copy / "jobs.id").unlink()
    start_gateway(state_dir=copy)
    assert len(_replies_queues_once(vhost, 2) - first) == 1


@pytest.mark.slow  # ~15 s: three gateway starts on PostgreSQL
def test_a_database_restored_beside_the_original_refuses_to_start(
    vhost: Vhost, pg_dsn: str, start_gateway: StartGateway
) -> None:
    gateways = [start_gateway(job_store=pg_dsn) for _ in range(2)]
    first = _replies_queues(vhost)
    assert len(first) == 1  # gateways on one database share its id
    for gateway in gateways:
        gateway.proc.stop()  # a database is copied while nobody is connected to it

    server, name = pg_dsn.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}_restored TEMPLATE {name}")  # a dump, restored
    restored = start_gateway(job_store=f"{pg_dsn}_restored", ready=False)
    output = _refused(restored)
    assert COPY_REFUSED.search(output), output
    assert "rpcfleet_meta" in output  # what to delete to give it an id of its own

    with psycopg.connect(f"{pg_dsn}_restored", autocommit=True) as db:
        db.execute("DELETE FROM rpcfleet_meta WHERE key IN ('store_id', 'store_instance')")
    start_gateway(job_store=f"{pg_dsn}_restored")
    assert len(_replies_queues_once(vhost, 2) - first) == 1


async def test_a_role_that_may_not_read_the_clusters_identity_shares_the_store(
    pg_dsn: str
) -> None:
    """The cluster's system identifier needs a right hardened servers revoke: a gateway whose
    role lacks it knows the database's oid alone, which is enough to compare (a restored copy
    is another database, another oid); it is not a copy."""
    import uuid

    from gateway.store.postgres import PostgresJobStore

    owner = await PostgresJobStore.open(pg_dsn)
    await owner.close()
    role = "app_" + uuid.uuid4().hex[:8]
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(f"CREATE ROLE {role} LOGIN")
        db.execute("REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC")
        db.execute(f"GRANT ALL ON SCHEMA public TO {role}")
        db.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
    app = await PostgresJobStore.open(pg_dsn.replace("postgres@", f"{role}@", 1))
    await app.close()
    assert app.store_id == owner.store_id
