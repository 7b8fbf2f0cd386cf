"""Fixtures of the fleet tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The fleet view's clock (time.monotonic), moved by hand: `clock[0] += seconds`."""
    now = [1000.0]
    monkeypatch.setattr("gateway.fleet.view.time.monotonic", lambda: now[0])
    return now
