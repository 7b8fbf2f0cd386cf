"""Reading a compose file the way Docker would not here (no engine): as data, and its commands
as argument lists for the real CLI."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
KNOWN_EXTRA_ENV = {"RPCFLEET_EXAMPLE_CACHE_MB"}  # read by the example pool itself


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / name).read_text())
    return loaded


def command(service: dict[str, Any]) -> list[str]:
    given = service["command"]
    return shlex.split(given) if isinstance(given, str) else [str(c) for c in given]
