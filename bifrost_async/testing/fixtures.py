"""What every rule group of the store kit stands on: the fixtures (``store_options``, ``clock``,
``store``) and :meth:`ContractFixtures.started`. Not for subclassing by store authors: they
subclass :class:`~bifrost_async.testing.StoreContract`, which also carries the settings' values."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
import pytest_asyncio

from ..store import JobStore, StoreContext, StoreFactory
from .clock import FakeClock


class ContractFixtures:
    """The kit's fixtures and store builder, shared by its rule groups (the settings are declared
    here for them and given their values, and documentation, on :class:`StoreContract`)."""

    bounded: bool
    max_jobs: int
    wake_deadline: float

    @pytest.fixture
    def store_options(self) -> Mapping[str, Any]:
        """The store's options; override for a store that needs some."""
        return {}

    @pytest.fixture
    def clock(self) -> FakeClock:
        """The clock every store of a test is built with."""
        return FakeClock()

    @contextlib.asynccontextmanager
    async def started(
        self,
        store_factory: StoreFactory,
        store_options: Mapping[str, Any],
        clock: FakeClock,
        *,
        max_jobs: int | None = None,
        max_owner_jobs: int = 0,
    ) -> AsyncIterator[JobStore]:
        """A store from ``store_factory``, started, closed afterwards (``max_jobs`` defaults to
        the class setting). Tests that need another bound or a per-owner share build theirs here."""
        bound = self.max_jobs if max_jobs is None else max_jobs
        context = StoreContext(
            clock=clock, max_jobs=bound, options=store_options, max_owner_jobs=max_owner_jobs
        )
        store = store_factory(context)
        await store.start()
        try:
            yield store
        finally:
            await store.close()

    @pytest_asyncio.fixture
    async def store(
        self, store_factory: StoreFactory, store_options: Mapping[str, Any], clock: FakeClock
    ) -> AsyncIterator[JobStore]:
        """The store under test, started (bound ``max_jobs``, no per-owner share)."""
        async with self.started(store_factory, store_options, clock) as store:
            yield store
