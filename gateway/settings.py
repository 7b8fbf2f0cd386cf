"""The gateway's settings (RPCFLEET_*), on top of the shared ones."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_settings import NoDecode

from transport.settings import CommonSettings


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CsvList = Annotated[list[str], NoDecode, BeforeValidator(_split_csv)]


# Upper bounds of the durations (a typo such as 1e20 is refused at start, not at the first
# call): a sync call waits at most a day, an AMQP expiration at most ~49 days.
HOUR_S = 3600
DAY_S = 24 * HOUR_S

class GatewaySettings(CommonSettings):
    # 4 s: a silent broker node is left within 8 s (two heartbeats: transport.silence). A
    # gateway runs no handler code, so nothing holds its loop (and its heartbeats) for long.
    heartbeat: int = Field(default=4, ge=0, le=600, description="AMQP heartbeat seconds")
    host: str | None = Field(default=None, description="bind address (default 127.0.0.1 "
                             "without any key, API or admin; else 0.0.0.0)")
    port: int = Field(default=8000, ge=0, le=65535, description="port (default 8000)")
    workers: int = Field(default=1, ge=1, description="gateway processes")
    api_keys: CsvList = Field(default_factory=list)
    admin_keys: CsvList = Field(default_factory=list)
    rpc_timeout_default: float = Field(default=30.0, gt=0, le=DAY_S, allow_inf_nan=False)
    rpc_timeout_max: float = Field(default=300.0, gt=0, le=DAY_S, allow_inf_nan=False)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    # Jobs one /v1/jobs/ws socket follows at once (each costs a task and a store read a second).
    ws_follow_max: int = Field(default=1000, ge=1, le=100_000)
    # A request body must arrive whole within this (408 request_timeout), so a client that
    # trickles bytes holds nothing for long.
    body_timeout: float = Field(default=30.0, gt=0, le=HOUR_S, allow_inf_nan=False)
    # Requests in progress (HTTP requests being served, WebSockets open) per gateway process;
    # the next get 503 overloaded at once. Idle keep-alive connections do not count (uvicorn
    # closes them after 5 s).
    max_connections: int = Field(default=4096, ge=1)
    # A broker that does not confirm a publish within this is treated as unreachable (503).
    publish_timeout: float = Field(default=5.0, gt=0, le=HOUR_S, allow_inf_nan=False)
    retry_after: int = Field(default=1, ge=0, le=HOUR_S)
    callback_secret: str | None = None
    callback_allow_hosts: CsvList = Field(default_factory=list)
    callback_window: float = Field(default=24 * 3600.0, gt=0, le=30 * DAY_S,
                                   allow_inf_nan=False)
    callback_attempt_timeout: float = Field(default=10.0, gt=0, le=HOUR_S, allow_inf_nan=False)
    callback_concurrency: int = Field(default=16, ge=1)
    # After failed attempt n the next waits a random 0..min(backoff * 2^(n-1), backoff_max) s.
    callback_backoff: float = Field(default=1.0, gt=0, le=DAY_S, allow_inf_nan=False)
    callback_backoff_max: float = Field(default=300.0, gt=0, le=DAY_S, allow_inf_nan=False)
    # A keyless gateway answers only these Host names (DNS rebinding) and, from browsers, only
    # its own origin and these (CSRF). Empty: localhost, 127.0.0.1, [::1] and the bind address.
    allowed_hosts: CsvList = Field(default_factory=list)
    allowed_origins: CsvList = Field(default_factory=list)
    # None: the embedded SQLite store in the state dir (one host). postgresql://...: the shared
    # store, for gateways on several hosts (the `postgres` extra).
    job_store: str | None = None
    job_retention: float = Field(default=7 * 24 * 3600.0, gt=0, le=3650 * DAY_S,
                                 allow_inf_nan=False)
    job_timeout_default: float | None = None
    # A folder of static pages served at /pages/ (same-origin with the API: no CORS needed),
    # e.g. examples/pages. None: no /pages/.
    pages_dir: Path | None = None

    def bind_host(self) -> str:
        if self.host:
            return self.host
        return "0.0.0.0" if self.api_keys or self.admin_keys else "127.0.0.1"
