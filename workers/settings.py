"""The worker's settings (RPCFLEET_*), on top of the shared ones."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, model_validator
from pydantic_settings import NoDecode

from protocol.fleet import ProcessRange
from protocol.queues import API_PRIORITIES, JOB_PRIORITY_LEVELS, DeadLetterStrategy
from transport.settings import CommonSettings


def _process_range(value: Any) -> Any:
    return ProcessRange.parse(value) if isinstance(value, str | int) else value


# `4` or `1..8`, from the environment as written (not JSON) and from the command line.
ProcessesSetting = Annotated[ProcessRange, NoDecode, BeforeValidator(_process_range),
                             PlainSerializer(str)]


class WorkerSettings(CommonSettings):
    # 5 s: a silent broker node is left within 10 s (two heartbeats: transport.silence). The
    # price: a handler's C call that holds the GIL (and so the consumer's heartbeats) for over
    # 10 s gets the consumer dropped.
    heartbeat: int = Field(default=5, ge=0, description="AMQP heartbeat seconds")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="the worker's log verbosity (a handler's error: ERROR)")
    processes: ProcessesSetting = Field(
        default=ProcessRange(min=1, max=1),
        description="consumer processes: N, or MIN..MAX to follow the load (elastic)")
    # Elastic pools: how long the pool must have been idle enough that one consumer fewer would
    # have done before one is retired (one per period).
    scale_idle: float = Field(default=60.0, gt=0, le=86400,
                              description="seconds of low load before an elastic pool retires "
                                          "a consumer")
    # Never fork past the host's free memory: a consumer's measured private memory plus this.
    scale_memory_margin_mb: int = Field(default=256, ge=0,
                                        description="free memory (MB) kept beyond a new "
                                                    "consumer's own")
    # Prefetch 1: a heavy handler should not hoard messages another idle process could take.
    # "auto": start at 1 and let each consumer size it from its handler time and broker round
    # trip (as `PUT .../prefetch {"prefetch": "auto"}` does live).
    prefetch: Annotated[int, Field(ge=1, le=1000)] | Literal["auto"] = Field(
        default=1, description="messages each consumer holds: 1-1000 or auto (default 1)")
    concurrency: int = Field(default=1, ge=1, description="handlers each consumer runs at once")
    # How long a handler thread keeps the GIL while the consumer's loop waits for it (Python's
    # switch interval; CPython's default is 5 ms). At 5 ms the loop, woken by the broker during
    # a handler of a few ms (the next delivery, a confirm), took the GIL from it 3.7 times a
    # call; at 20 ms it waits for the handler's end: ~3 % more req/s for a 5 ms handler on a
    # thread (docs/performance.md, "The thread path"). The loop's heartbeats, cancels and time
    # limits wait this long per hand-off behind CPU-bound handler threads (with N of them
    # running, up to N times).
    switch_interval: float = Field(default=0.02, gt=0, le=1,
                                   description="seconds a handler thread keeps the GIL before "
                                               "the consumer's loop may take it")
    # Grace before the supervisor's SIGKILL backstop hits a consumer past its hard limit.
    kill_grace: float = Field(default=5.0, gt=0)
    # Seconds a draining consumer waits for in-flight work on SIGTERM before giving up.
    drain_timeout: float = Field(default=30.0, gt=0)
    cap_native_threads: bool = Field(
        default=True, description="native thread pools (OpenBLAS, OpenMP, MKL) at one thread "
                                  "per consumer; off: leave native thread pools at their "
                                  "default size")
    # Recycling: a consumer drains and is replaced by a fresh fork (no cache reload) after this
    # many messages, or once its private memory (pages not shared with the supervisor) passes
    # this many MiB. None: never.
    max_messages: int | None = Field(default=None, ge=1,
                                     description="recycle a consumer after N messages")
    max_private_mb: int | None = Field(
        default=None, ge=1, description="recycle a consumer whose private memory passes MB")
    # False: each consumer builds its own cache after fork (caches that hold threads, sockets or
    # locks cannot cross a fork); costs one cache per process and a reload on every replacement.
    preload: bool = Field(default=True, description="build the cache once before forking; off: "
                                                    "build the cache in each consumer, after the "
                                                    "fork")
    # Quorum pool queues only (set when a queue is first declared; changing them later needs
    # the queue drained and deleted): the broker's delivery limit, a backstop for consumers
    # that die before counting an attempt (RPCFLEET_MAX_ATTEMPTS acts first), and its
    # dead-lettering strategy (at-least-once: a dead letter is never lost between queues).
    delivery_limit: int | None = Field(default=10, ge=1)
    dead_letter_strategy: DeadLetterStrategy = "at-least-once"
    # Classic pool queues only (set when a queue is first declared): how many broker priority
    # levels jobs get below the sync calls' one (SPEC 1.2, priorities on the wire). 2: jobs of
    # priority 5-9 overtake those of 0-4; 10: every API priority its own level, at a broker cost
    # per message (docs/performance.md).
    job_priority_levels: int = Field(default=JOB_PRIORITY_LEVELS, ge=2, le=API_PRIORITIES)

    @model_validator(mode="after")
    def _within_limit(self) -> WorkerSettings:
        if self.processes.max > self.max_processes:
            raise ValueError(f"processes {self.processes} is above max_processes "
                             f"({self.max_processes}; RPCFLEET_MAX_PROCESSES raises it)")
        return self
