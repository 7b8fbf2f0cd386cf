"""The SQLite job store says at once, in one line, when the Python it runs on has a SQLite too
old for its SQL (RETURNING came in 3.35), instead of failing at the first job."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.store import SqliteJobStore


def test_a_sqlite_older_than_3_35_is_refused_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.1")
    with pytest.raises(ValueError, match=r"needs SQLite 3\.35\.0 or newer.*runs 3\.34\.1.*"
                                         r"PostgreSQL store"):
        SqliteJobStore(tmp_path / "jobs.sqlite3")
    assert not (tmp_path / "jobs.sqlite3").exists()  # refused before touching anything
