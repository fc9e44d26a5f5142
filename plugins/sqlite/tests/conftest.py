"""Fixtures: a fresh database file per test, in pytest's ``tmp_path`` (a real file, never a mock)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where this test's SQLite store keeps its jobs (created by the store at start)."""
    return tmp_path / "jobs.db"
