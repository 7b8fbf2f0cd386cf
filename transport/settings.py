"""The settings gateways and workers share, typed, read from the environment (prefix RPCFLEET_).

Each side extends them in its own package (`gateway.settings`, `workers.settings`); the CLI
(`rpcfleet`) reads them once at its entry point, derives its options from them, and passes them
down.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from protocol.queues import QueueType
from transport.cluster import checked_amqp_url, node_urls
from transport.tracing import Exporter

MAX_PROCESSES_LIMIT = 256  # consumers one supervisor may run for a pool, whatever is asked


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RPCFLEET_", extra="ignore")

    amqp_url: str = Field(default="amqp://guest:guest@127.0.0.1:5672/",
                          description="broker URL; several comma-separated for a cluster")
    # AMQP heartbeat, seconds. A peer that sends nothing for (heartbeat + 1) x 3 s is dead to
    # aio-pika's side (a broker node that went silent: powered off, frozen, cut off without a
    # reset), and the connection moves to another node. Each layer sets its own default.
    heartbeat: int = Field(default=30, ge=0, description="AMQP heartbeat seconds")
    # Fleet announcements: a worker missing 3 beats (15 s) leaves the fleet view.
    beat_interval: float = Field(default=5.0, gt=0)
    state_dir: Path = Path(".rpcfleet")
    # None: quorum when RPCFLEET_AMQP_URL lists several nodes (a cluster), else classic.
    queue_type: QueueType | None = Field(
        default=None, description="pool queues: classic, or quorum (the default on a cluster)")
    max_attempts: int = Field(default=3, ge=1)
    max_result_bytes: int = Field(default=16 * 1024 * 1024, ge=1)
    # Elastic pools: the highest MAX a range may ask for, live included (a gateway refuses more;
    # a supervisor sizes the table it shares with its consumers by it).
    max_processes: int = Field(default=32, ge=1, le=MAX_PROCESSES_LIMIT,
                               description="the highest MAX a process range may ask for")
    # OpenTelemetry spans (the `otel` extra): otlp (OTEL_EXPORTER_OTLP_* configure it) or
    # console. None: off.
    otel_exporter: Exporter | None = None

    @field_validator("amqp_url")
    @classmethod
    def _an_amqp_url(cls, value: str) -> str:
        return checked_amqp_url(value)

    @model_validator(mode="after")
    def _cluster_default(self) -> CommonSettings:
        if self.queue_type is None:
            self.queue_type = "quorum" if len(node_urls(self.amqp_url)) > 1 else "classic"
        return self

    @property
    def queues(self) -> QueueType:
        """The queue type in force (after the cluster default)."""
        return self.queue_type or "classic"
