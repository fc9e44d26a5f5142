"""The examples keep working: the custom store plugin keeps the store contract and serves jobs."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bifrost_async import AsyncJobsMiddleware
from bifrost_async.store import StoreContext, StoreFactory
from bifrost_async.testing import StoreContract
from tests.apps import make_app
from tests.helpers import Recorder
from tests.proxy_support import load_example

custom_store = load_example("custom_store_plugin")


class TestDictStoreExample(StoreContract):
    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        return custom_store.dict_store  # type: ignore[no-any-return]


async def test_dict_store_serves_jobs(serve: Any, http: httpx.AsyncClient) -> None:
    recorder = Recorder()
    app = AsyncJobsMiddleware(make_app(), store="dict", plugins=[custom_store, recorder])
    server = await serve(app)
    submitted = await http.post(f"{server.url}/v1/async/embeddings", json={"model": "m", "input": "x"})
    await recorder.wait("finished", submitted.json()["id"])
    polled = await http.get(f"{server.url}/v1/async/embeddings/{submitted.json()['id']}")
    assert polled.status_code == 200 and polled.json()["status"] == "completed"
    assert isinstance(app.store, custom_store.DictStore)


def test_dict_store_options_are_typed_and_checked() -> None:
    """The example's options go through parse_store_options: strings typed, bad values refused."""
    from bifrost_async.testing import FakeClock

    def build(options: dict[str, Any]) -> Any:
        return custom_store.dict_store(StoreContext(clock=FakeClock(), max_jobs=10, options=options))

    assert build({}).max_jobs == 10
    assert build({"max_jobs": "3"}).max_jobs == 3  # a string, as --store-option gives it
    with pytest.raises(ValueError, match="max_jobs must not be negative"):
        build({"max_jobs": "-1"})
    with pytest.raises(ValueError, match="unknown dict store option"):
        build({"max_job": "3"})
