"""The memory store keeps the store contract."""

import pytest

from bifrost_async.default_plugins.memory import memory_store
from bifrost_async.store import StoreFactory
from bifrost_async.testing import StoreContract


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        return memory_store
