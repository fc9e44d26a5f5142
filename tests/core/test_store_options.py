"""How a store's options reach it (``parse_store_options``) and how a store says it is shared."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest

from bifrost_async import hookimpl
from bifrost_async.core.hooks import PluginError, make_plugin_manager, store_registry
from bifrost_async.store import RegisterStore, StoreContext, parse_store_options


@dataclasses.dataclass(frozen=True)
class Options:
    path: pathlib.Path = pathlib.Path("jobs.db")
    busy_timeout: float = 5.0
    pool: int = 4
    limit: int | None = None
    wal: bool = True
    name: str = "x"

    def validate(self) -> None:
        if self.pool < 1:
            raise ValueError("demo store option pool must be at least 1")


def test_strings_become_the_fields_types() -> None:
    raw = {"path": "/tmp/a b/jobs.db", "busy_timeout": "2.5", "pool": "8", "limit": "none", "wal": "off"}
    built = parse_store_options(Options, raw, store="demo")
    assert built == Options(pathlib.Path("/tmp/a b/jobs.db"), 2.5, 8, None, False, "x")
    assert parse_store_options(Options, {"limit": "3", "wal": "YES"}, store="demo").limit == 3
    assert parse_store_options(Options, {}, store="demo") == Options()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"colour": "red"}, "unknown demo store option(s): colour; known: busy_timeout, limit, name, path"),
        ({"pool": "many"}, "demo store option pool must be a number, got 'many'"),
        ({"busy_timeout": "nan"}, "demo store option busy_timeout must be a finite number"),
        ({"wal": "maybe"}, "demo store option wal must be true or false, got 'maybe'"),
        ({"pool": True}, "demo store option pool must be a number"),
        ({"name": 3}, "demo store option name must be a string, got int"),
        ({"pool": "0"}, "demo store option pool must be at least 1"),
        ({"path": ""}, "demo store option path must be a path"),
        ({"pool": None}, "demo store option pool must not be empty"),
    ],
)
def test_bad_options_name_the_store_and_the_option(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_store_options(Options, raw, store="demo")


class TwoStores:
    @hookimpl
    def register_stores(self, register: RegisterStore) -> None:
        register("lonely", lambda context: None)
        register("together", lambda context: None, shared=True)


def test_a_store_declares_whether_processes_share_it() -> None:
    stores = store_registry(make_plugin_manager([TwoStores()], entry_points=False))
    assert stores.is_shared("together") and not stores.is_shared("lonely")
    assert not stores.is_shared("memory")  # one process's dictionary
    with pytest.raises(PluginError, match="unknown store 'nowhere'"):
        stores.is_shared("nowhere")


def test_the_redis_store_is_shared_and_reads_its_options_through_the_core() -> None:
    stores = store_registry(make_plugin_manager())
    assert stores.is_shared("redis")
    factory = stores.get("redis")
    with pytest.raises(ValueError, match="redis store option retries must be a number"):
        factory(StoreContext(clock=lambda: 0.0, max_jobs=1, options={"retries": "x"}))
