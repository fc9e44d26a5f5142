"""The property tests of ``tests/test_property_e2e.py`` with the Redis store: what a job holds
after an odd upstream answer (U+FFFD for lone surrogates, infinity from an overflowing number,
text for deep nesting) survives Redis's JSON record and polls the same at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.http.test_random_requests_property import Tracked, tracking
from tests.http.test_random_requests_property import test_random_requests as test_random_requests_on_redis
from tests.http.test_random_requests_property import (
    test_random_upstream_answers as test_random_upstream_answers_on_redis,
)

from tests.conftest import serve as serve  # the fixture: real uvicorn servers

__all__ = ["serve", "test_random_requests_on_redis", "test_random_upstream_answers_on_redis"]


@pytest.fixture
async def tracked(serve: Any, redis_url: str) -> AsyncIterator[Tracked]:
    options = {"url": redis_url, "sweep_interval": 0}
    async with tracking(serve, frozen=False, store="redis", store_options=options) as target:
        yield target
