"""Inside a freshly forked consumer: reset what the fork inherited, start a loop, run, exit."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable

try:  # imported here, in the supervisor, before the fork: each consumer importing it after
    # would hold 3.2 MiB of its own (measured; docs/workers.md, "What a consumer costs")
    import uvloop

    LOOP_FACTORY: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
except ImportError:  # pragma: no cover - uvloop is a dependency (not on Windows)
    LOOP_FACTORY = asyncio.new_event_loop

from workers.consumer.claims import EXIT_CLASH, MethodClash
from workers.consumer.runtime import Consumer
from workers.consumer.state import ConsumerSetup
from workers.memory import describe
from workers.pool import CacheLoadFailed

log = logging.getLogger("rpcfleet.worker")

EXIT_CACHE = 79  # the pool's cache loader raised in this consumer (--no-preload)


def consumer_main(setup: ConsumerSetup) -> int:
    # The supervisor's signal handlers (and any wakeup fd) must not run in the child.
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload is the supervisor's business
    sys.setswitchinterval(setup.settings.switch_interval)  # handler threads vs the loop
    try:
        if not setup.settings.preload:
            setup.cache = setup.pool.load_cache()
            setup.cache_info = describe(setup.cache)
            log.info("consumer %s: cache of %s bytes (%s) built", setup.worker_id,
                     setup.cache_info.bytes, setup.cache_info.shape)
        with asyncio.Runner(loop_factory=LOOP_FACTORY) as runner:
            return runner.run(Consumer(setup).run())
    except CacheLoadFailed as exc:
        log.error("consumer %s stops: %s", setup.worker_id, exc)
        log.debug("the cache loader's traceback", exc_info=exc.__cause__)
        return EXIT_CACHE
    except MethodClash as exc:
        log.error("consumer %s stops: %s", setup.worker_id, exc)
        return EXIT_CLASH
    except Exception:
        log.exception("consumer %s crashed", setup.worker_id)
        return 1


def run_in_child(setup: ConsumerSetup) -> None:
    """Never returns: the child leaves with os._exit, so no parent cleanup runs twice and an
    abandoned handler thread cannot keep it alive."""
    code = 1
    try:
        code = consumer_main(setup)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)


def signal_quietly(pid: int, sig: signal.Signals) -> None:
    """Signal a consumer that may have exited meanwhile."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def describe_exit(status: int) -> str:
    """A wait status as the supervisor's log says it."""
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
