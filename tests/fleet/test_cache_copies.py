"""A shared cache being copied into a consumer is said (issue 25): the beat's
`cache_copied_bytes`, and the worker's log once, pointing to the docs; a SharedMapping of the same
data is not copied."""

from __future__ import annotations

from tests.support.fleet import StartWorker
from tests.support.gateway import StartGateway, wait_for_workers
from tests.support.waiting import wait_for


def test_a_dict_of_small_objects_read_by_a_consumer_is_flagged_as_copied(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    worker = start_worker("tests.pools.objects:pool", pool="objects")
    gateway = start_gateway()
    wait_for_workers(gateway, 1)
    with gateway.client() as http:
        assert http.post("/v1/rpc/read_all", json={}).status_code == 200
        copied = wait_for(lambda: wait_for_workers(gateway, 1)[0]["cache_copied_bytes"],
                          timeout=15, what="the beat to say the cache is being copied")
    cache = wait_for_workers(gateway, 1)[0]["cache_bytes"]
    assert copied > cache / 4, (copied, cache)
    wait_for(lambda: "the cache is being copied into this process" in worker.output(),
             timeout=5, what="the worker's log to say so", detail=worker.output)
    assert "SharedMapping" in worker.output() and "docs/workers.md" in worker.output()


def test_the_same_data_as_a_shared_mapping_is_not_copied(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    worker = start_worker("tests.pools.objects:shared", pool="shared")
    gateway = start_gateway()
    first = wait_for_workers(gateway, 1)[0]
    # Its size as it is (its buffer, not the object's 72-byte header): past the 16 MiB from
    # which the copy watch is armed, so "not copied" below is a measurement, not a default.
    assert first["cache_bytes"] > 16 * 1048576 and first["cache_shape"] == "buffers", first
    with gateway.client() as http:
        assert http.post("/v1/rpc/read_all_shared", json={}).status_code == 200
    # Two beats after the reads (beats every second here): still nothing copied.
    later = wait_for(lambda: (entry := wait_for_workers(gateway, 1)[0])["processed"] >= 1
                     and entry["last_seen"] > first["last_seen"] and entry, timeout=15,
                     what="a beat after the reads")
    wait_for(lambda: (entry := wait_for_workers(gateway, 1)[0])["last_seen"]
             > later["last_seen"] and entry, timeout=15, what="a second beat after the reads")
    assert wait_for_workers(gateway, 1)[0]["cache_copied_bytes"] is None
    assert "being copied" not in worker.output()
