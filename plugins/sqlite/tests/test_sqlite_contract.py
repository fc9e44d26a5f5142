"""The SQLite store keeps the store contract, on a real database file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from bifrost_async.store import StoreFactory
from bifrost_async.testing import StoreContract

from bifrost_async_sqlite import sqlite_store


class TestSqliteStore(StoreContract):
    """The shared contract; the bound is kept across processes (a count kept by triggers)."""

    bounded = True

    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        return sqlite_store

    @pytest.fixture
    def store_options(self, db_path: Path) -> Mapping[str, Any]:
        return {"path": str(db_path), "sweep_interval": "0", "notify_interval": "0.01"}
