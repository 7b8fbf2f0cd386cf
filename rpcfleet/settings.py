"""The operator commands' settings (`rpcfleet workers`, `prefetch`, `processes`, `retire`, ...):
which gateway they talk to and with which admin key, typed, read from the environment (prefix
RPCFLEET_) like every other layer's (`transport.settings`, `gateway.settings`,
`workers.settings`); their command-line options override them."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RPCFLEET_", extra="ignore")

    gateway_url: str = "http://127.0.0.1:8000"  # --gateway
    admin_key: str | None = None  # --key: one of the gateway's RPCFLEET_ADMIN_KEYS
