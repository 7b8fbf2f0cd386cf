"""Every setting of rpcfleet, typed, read from the environment (prefix RPCFLEET_) once at the entry
point and passed down. CLI options override the environment where they fit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from protocol.queues import DeadLetterStrategy, QueueType
from rpcfleet.cluster import node_urls


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CsvList = Annotated[list[str], NoDecode, BeforeValidator(_split_csv)]


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RPCFLEET_", extra="ignore")

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # AMQP heartbeat: 30 s detects a dead peer within a minute without chatter; handlers run off
    # the event loop so pure-Python CPU work does not stop heartbeats.
    heartbeat: int = Field(default=30, ge=0)
    # Fleet announcements: a worker missing 3 beats (15 s) leaves the fleet view.
    beat_interval: float = Field(default=5.0, gt=0)
    state_dir: Path = Path(".rpcfleet")
    # None: quorum when RPCFLEET_AMQP_URL lists several nodes (a cluster), else classic.
    queue_type: QueueType | None = None
    max_attempts: int = Field(default=3, ge=1)
    max_result_bytes: int = Field(default=16 * 1024 * 1024, ge=1)


    @model_validator(mode="after")
    def _cluster_default(self) -> CommonSettings:
        if self.queue_type is None:
            self.queue_type = "quorum" if len(node_urls(self.amqp_url)) > 1 else "classic"
        return self

    @property
    def queues(self) -> QueueType:
        """The queue type in force (after the cluster default)."""
        return self.queue_type or "classic"


class WorkerSettings(CommonSettings):
    processes: int = Field(default=1, ge=1)
    # Prefetch 1: a heavy handler should not hoard messages another idle process could take.
    prefetch: int = Field(default=1, ge=1, le=1000)
    concurrency: int = Field(default=1, ge=1)
    # Grace before the supervisor's SIGKILL backstop hits a consumer past its hard limit.
    kill_grace: float = Field(default=5.0, gt=0)
    # Seconds a draining consumer waits for in-flight work on SIGTERM before giving up.
    drain_timeout: float = Field(default=30.0, gt=0)
    cap_native_threads: bool = True
    # Recycling: a consumer drains and is replaced by a fresh fork (no cache reload) after this
    # many messages, or once its private memory (pages not shared with the supervisor) passes
    # this many MiB. None: never.
    max_messages: int | None = Field(default=None, ge=1)
    max_private_mb: int | None = Field(default=None, ge=1)
    # False: each consumer builds its own cache after fork (caches that hold threads, sockets or
    # locks cannot cross a fork); costs one cache per process and a reload on every replacement.
    preload: bool = True
    # Quorum pool queues only (set when a queue is first declared; changing them later needs
    # the queue drained and deleted): the broker's delivery limit, a backstop for consumers
    # that die before counting an attempt (RPCFLEET_MAX_ATTEMPTS acts first), and its
    # dead-lettering strategy (at-least-once: a dead letter is never lost between queues).
    delivery_limit: int | None = Field(default=10, ge=1)
    dead_letter_strategy: DeadLetterStrategy = "at-least-once"


class GatewaySettings(CommonSettings):
    host: str | None = None  # None: 127.0.0.1 when no API keys are set, else 0.0.0.0
    port: int = 8000
    workers: int = Field(default=1, ge=1)
    api_keys: CsvList = Field(default_factory=list)
    admin_keys: CsvList = Field(default_factory=list)
    rpc_timeout_default: float = Field(default=30.0, gt=0)
    rpc_timeout_max: float = Field(default=300.0, gt=0)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    # A broker that does not confirm a publish within this is treated as unreachable (503).
    publish_timeout: float = Field(default=5.0, gt=0)
    retry_after: int = Field(default=1, ge=0)
    callback_secret: str | None = None
    callback_allow_hosts: CsvList = Field(default_factory=list)
    callback_window: float = Field(default=24 * 3600.0, gt=0)
    callback_attempt_timeout: float = Field(default=10.0, gt=0)
    callback_concurrency: int = Field(default=16, ge=1)
    # Retry n waits a random 0..min(backoff * 2^n, backoff_max) s: spread, and capped at 5 min.
    callback_backoff: float = Field(default=1.0, gt=0)
    callback_backoff_max: float = Field(default=300.0, gt=0)
    # A keyless gateway answers only these Host names (DNS rebinding) and, from browsers, only
    # its own origin and these (CSRF). Empty: localhost, 127.0.0.1, [::1] and the bind address.
    allowed_hosts: CsvList = Field(default_factory=list)
    allowed_origins: CsvList = Field(default_factory=list)
    # None: the embedded SQLite store in the state dir (one host). postgresql://...: the shared
    # store, for gateways on several hosts (the `postgres` extra).
    job_store: str | None = None
    job_retention: float = Field(default=7 * 24 * 3600.0, gt=0)
    job_timeout_default: float | None = None

    def bind_host(self) -> str:
        if self.host:
            return self.host
        return "0.0.0.0" if self.api_keys or self.admin_keys else "127.0.0.1"
