"""The SQLite store keeps the store contract and the webhook records contract, on a real file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from bifrost_async import testing
from bifrost_async.store import StoreContext, StoreFactory
from bifrost_async.testing import FakeClock, StoreContract, WebhookRecordsContract

from bifrost_async_sqlite import sqlite_store

#: The kit's two-instance contract once it is on main (it builds a second instance from the same
#: factory, options and clock, standing for a second process); until then the single-instance one,
#: and ``test_sqlite_shared.py`` covers two instances and two processes.
Contract: type[StoreContract] = getattr(testing, "SharedStoreContract", StoreContract)


class TestSqliteStore(Contract):  # type: ignore[valid-type,misc]
    """The store contract; the bound is kept across processes (a count kept by triggers)."""

    bounded = True

    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        return sqlite_store

    @pytest.fixture
    def store_options(self, db_path: Path) -> Mapping[str, Any]:
        return {"path": str(db_path), "sweep_interval": "0", "notify_interval": "0.01"}


class TestSqliteWebhookRecords(WebhookRecordsContract):
    """The webhook records capability's contract, on a real file."""

    @pytest.fixture
    async def records(self, db_path: Path) -> AsyncIterator[Any]:
        options = {"path": str(db_path), "sweep_interval": "0"}
        store = sqlite_store(StoreContext(clock=FakeClock(), max_jobs=10, options=options))
        await store.start()
        yield store
        await store.close()


async def test_two_instances_share_webhook_endpoints(db_path: Path) -> None:
    options = {"path": str(db_path), "sweep_interval": "0"}
    a, b = (sqlite_store(StoreContext(clock=FakeClock(), max_jobs=10, options=options)) for _ in range(2))
    await a.start()
    await b.start()
    try:
        assert await a.webhook_create("e1", "billing", '{"name": "billing"}')
        assert not await b.webhook_create("e2", "billing", '{"name": "billing"}')  # taken, elsewhere
        assert await b.webhook_id_by_name("billing") == "e1"
        await b.webhook_count("e1", False, 503)
        assert (await a.webhook_counters("e1"))["last_status_code"] == 503
    finally:
        await a.close()
        await b.close()
