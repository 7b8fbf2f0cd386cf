"""What a supervisor does once before it forks (and again before a reload's forks): claim the
pool's methods (SPEC 1.2, one pool per method), load the cache and say what it is made of, and
leave the consumers nothing to build or touch for themselves after the fork."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from transport.cluster import connect_cluster
from workers.consumer.claims import EXIT_CLASH, MethodClash, check_claims
from workers.memory import CacheInfo, describe
from workers.pool import CacheLoadFailed, Pool
from workers.settings import WorkerSettings

log = logging.getLogger("rpcfleet.supervisor")

EXIT_GAVE_UP = 3  # the supervisor's own: the cache could not be built


class NotStarting(Exception):
    """The pool does not start; `code` is the supervisor's exit code (its log said why)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def prepare(pool: Pool, settings: WorkerSettings) -> tuple[object, CacheInfo]:
    """The cache the consumers will share (None with --no-preload: each builds its own) and
    what it is; raises NotStarting when a method is another pool's or the cache fails."""
    clash = claimed_elsewhere(pool, settings)
    if clash is not None:
        log.error("pool %s does not start: %s", pool.name, clash)
        raise NotStarting(EXIT_CLASH)
    if not settings.preload:
        log.info("pool %s: each consumer builds its own cache (--no-preload)", pool.name)
        return None, CacheInfo(None, "per-process")
    started = time.monotonic()
    try:
        cache = pool.load_cache()
    except CacheLoadFailed as exc:
        log.error("pool %s does not start: %s", pool.name, exc)
        log.debug("the cache loader's traceback", exc_info=exc.__cause__)
        raise NotStarting(EXIT_GAVE_UP) from None
    info = describe(cache)
    log.info("pool %s: cache of %s bytes (%s) loaded in %.1f s", pool.name, info.bytes,
             info.shape, time.monotonic() - started)
    if not info.shares_well:
        log.warning("the cache is made of many small Python objects: reference counting "
                    "copies its pages into every consumer. Keep big data in buffers.")
    return cache, info


def claimed_elsewhere(pool: Pool, settings: WorkerSettings) -> MethodClash | None:
    """Claim the pool's methods before anything else: a method another live pool serves stops
    this one here, before its cache loads and before anything is bound. A broker that cannot
    be reached now is left to the consumers, which claim again before they bind."""
    async def check() -> None:
        connection = await connect_cluster(settings.amqp_url, heartbeat=settings.heartbeat)
        try:
            await check_claims(connection, pool.name, pool.methods)
        finally:
            await connection.close()

    try:
        asyncio.run(check())
    except MethodClash as exc:
        return exc
    except Exception as exc:
        log.warning("could not check the pool's method claims now (%s: %s); its "
                    "consumers will, before they bind", type(exc).__name__, exc)
    return None


def before_forking(pool: Pool) -> None:
    """What every consumer would otherwise build or touch for itself after the fork, each page
    it writes then its own: the methods' API docs its beats carry (1.4 MiB a consumer,
    measured), and the collector's bookkeeping (`gc.freeze`: a full collection in a consumer
    would otherwise write to every object it inherited: 8.5 MiB a consumer)."""
    try:
        pool.docs()
    except Exception:  # the consumers' beats will say it again; serving does not need it
        log.exception("could not build the API docs of pool %s", pool.name)
    gc.collect()
    gc.freeze()
