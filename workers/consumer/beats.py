"""The beat: this consumer's worker entry on rpcfleet.events, every beat interval and at once
after a change (SPEC: worker entry)."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version

from protocol import WorkerEntry
from protocol.clock import now_ms, rfc3339
from workers.consumer.state import ConsumerSetup, Counters
from workers.memory import pss_bytes


def _installed_version() -> str | None:
    try:
        return version("rpcfleet")
    except PackageNotFoundError:  # run from a source tree that was not installed
        return None


VERSION = _installed_version()


def worker_entry(setup: ConsumerSetup, prefetch: int, auto: bool, in_flight: int,
                 counters: Counters, consuming: bool) -> WorkerEntry:
    return WorkerEntry(
        id=setup.worker_id,
        pool=setup.pool.name,
        host=setup.host,
        pid=os.getpid(),
        slot=setup.slot,
        methods=setup.pool.methods,
        prefetch=prefetch,
        prefetch_mode="auto" if auto else "fixed",
        concurrency=setup.settings.concurrency,
        in_flight=in_flight,
        consuming=consuming,
        processed=counters.processed,
        failed=counters.failed,
        pss_bytes=pss_bytes(),
        cache_bytes=setup.cache_info.bytes,
        cache_shape=setup.cache_info.shape,
        last_seen=rfc3339(now_ms()),
        beat_interval=setup.settings.beat_interval,
        docs=setup.pool.docs(),
        version=VERSION,
    )
