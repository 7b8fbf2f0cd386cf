"""Time in the contract: epoch milliseconds on the wire, RFC 3339 UTC with milliseconds in JSON."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def rfc3339(epoch_ms: int) -> str:
    """2026-11-23T20:17:03.123Z: fixed width, so timestamps sort as strings."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def parse_rfc3339(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round(moment.timestamp() * 1000)
