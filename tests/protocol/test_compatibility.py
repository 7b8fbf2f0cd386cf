"""Two versions side by side during a rolling upgrade (docs/upgrading.md): what one version's
messages look like to the other."""

from __future__ import annotations

import json

import pytest

from protocol import Cancel, SetPrefetch, WorkerEntry
from protocol.fleet import UnknownCommand, read_control

BEAT = {"id": "h:pool:0", "pool": "pool", "host": "h", "pid": 7, "slot": 0, "methods": ["echo"],
        "prefetch": 2, "concurrency": 1, "in_flight": 0, "processed": 3, "failed": 0,
        "pss_bytes": 1, "cache_bytes": 1, "last_seen": "now"}


def test_a_beat_with_fields_of_a_newer_worker_is_read_without_them() -> None:
    newer = {**BEAT, "gpus": {"used": 1, "free": 3}, "scaling": "up"}
    entry = WorkerEntry.model_validate_json(json.dumps(newer))
    assert entry == WorkerEntry.model_validate_json(json.dumps(BEAT))


def test_a_beat_of_an_older_worker_gets_the_defaults_of_the_fields_it_lacks() -> None:
    entry = WorkerEntry.model_validate_json(json.dumps(BEAT))
    assert (entry.consuming, entry.leaving, entry.session, entry.prefetch_mode) == (
        True, False, 0, "fixed")


def test_a_command_this_version_does_not_know_is_told_apart_from_a_malformed_one() -> None:
    with pytest.raises(UnknownCommand) as unknown:
        read_control(b'{"op": "warm_cache", "keys": [1, 4]}')
    assert unknown.value.op == "warm_cache"
    for malformed in (b'{"op": "set_prefetch", "prefetch": 0}', b"not json", b"[1]"):
        with pytest.raises(ValueError) as bad:
            read_control(malformed)
        assert not isinstance(bad.value, UnknownCommand)


def test_a_known_command_with_fields_of_a_newer_gateway_is_obeyed() -> None:
    assert read_control(b'{"op": "set_prefetch", "prefetch": 4, "reason": "operator"}') == \
        SetPrefetch(prefetch=4)
    assert read_control(b'{"op": "cancel", "job_id": "job_1", "by": "admin"}') == \
        Cancel(job_id="job_1")
