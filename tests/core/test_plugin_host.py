"""The plugin host: registries, entry points, owner and observer hooks, hookspec docs."""

from __future__ import annotations

import importlib.metadata
import inspect
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from bifrost_async import AsyncJobsMiddleware, hookimpl, hookspecs
from bifrost_async.builtin.memory import memory_store
from bifrost_async.core.hooks import PluginError, make_plugin_manager, store_registry
from tests.helpers import build_stack


def test_every_hookspec_documents_when_arguments_and_return() -> None:
    specs = [
        obj
        for name, obj in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(obj, "bifrost_async_spec")
    ]
    assert {spec.__name__ for spec in specs} >= {
        "register_stores",
        "register_providers",
        "job_owner",
        "job_submitted",
        "job_started",
        "job_finished",
    }
    for spec in specs:
        doc = inspect.getdoc(spec) or ""
        assert "Called" in doc, f"{spec.__name__} does not say when it is called"
        for parameter in inspect.signature(spec).parameters:
            assert parameter in doc, f"{spec.__name__} does not describe {parameter!r}"
        if inspect.signature(spec).return_annotation not in ("None", None):
            assert "Return" in doc, f"{spec.__name__} does not state its return contract"


def test_defaults_are_registered_as_plugins() -> None:
    pm = make_plugin_manager(entry_points=False)
    assert store_registry(pm).names() == ["memory"]
    names = {pm.get_name(plugin) for plugin in pm.get_plugins()}
    assert "bifrost_async.builtin.memory" in names


def test_duplicate_store_name_names_both_plugins() -> None:
    class Rival:
        @hookimpl
        def register_stores(self, register: Any) -> None:
            register("memory", memory_store)

    pm = make_plugin_manager([Rival()], entry_points=False)
    with pytest.raises(PluginError) as info:
        store_registry(pm)
    message = str(info.value)
    assert "bifrost_async.builtin.memory" in message and "'memory'" in message
    assert str(pm.get_name(next(p for p in pm.get_plugins() if isinstance(p, Rival)))) in message


def test_unknown_store_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"^store: unknown store 'nope'; registered: memory"):
        AsyncJobsMiddleware(lambda *a: None, store="nope")


def test_unknown_option_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="concurency"):
        AsyncJobsMiddleware(lambda *a: None, concurency=3)
    with pytest.raises(ValueError, match="concurrency: must be positive"):
        AsyncJobsMiddleware(lambda *a: None, concurrency=0)


def test_plugin_found_through_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution that declares the ``bifrost_async`` entry point is loaded by default."""
    (tmp_path / "bifrost_async_shelf.py").write_text(
        "from bifrost_async import hookimpl\n"
        "from bifrost_async.builtin.memory import memory_store\n"
        "@hookimpl\n"
        "def register_stores(register):\n"
        "    register('shelf', memory_store)\n"
    )
    info = tmp_path / "bifrost_async_shelf-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bifrost-async-shelf\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[bifrost_async]\nshelf = bifrost_async_shelf\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert any(d.metadata["Name"] == "bifrost-async-shelf" for d in importlib.metadata.distributions())
    pm = make_plugin_manager()
    assert "shelf" in store_registry(pm).names()
    assert "shelf" not in store_registry(make_plugin_manager(entry_points=False)).names()
    sys.modules.pop("bifrost_async_shelf", None)


class TenantOwner:
    """Keys ownership on a tenant header instead of credentials."""

    @hookimpl
    def job_owner(
        self, headers: list[tuple[bytes, bytes]], scope: dict[str, Any], secret: str | None
    ) -> str | None:
        for name, value in headers:
            if name == b"x-tenant":
                return "tenant:" + value.decode()
        return None


async def test_owner_hook_overrides_default(serve: Any, http: httpx.AsyncClient) -> None:
    from tests.apps import make_app
    from tests.helpers import Recorder

    recorder = Recorder()
    server = await serve(AsyncJobsMiddleware(make_app(), plugins=[recorder, TenantOwner()]))
    submitted = await http.post(
        f"{server.url}/v1/async/embeddings",
        json={"model": "m", "input": "x"},
        headers={"x-tenant": "acme", "authorization": "Bearer one"},
    )
    await recorder.wait("finished", submitted.json()["id"])
    url = f"{server.url}/v1/async/embeddings/{submitted.json()['id']}"
    same_tenant = await http.get(url, headers={"x-tenant": "acme", "authorization": "Bearer two"})
    assert same_tenant.status_code == 200
    assert (await http.get(url, headers={"x-tenant": "other"})).status_code == 404
    # without the tenant header the default (credential digest) decides
    assert (await http.get(url, headers={"authorization": "Bearer one"})).status_code == 404


async def test_observer_hooks_fire_in_order(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve)
    submitted = await stack.submit(http, "embeddings", json={"model": "m", "input": "x"})
    job_id = submitted.json()["id"]
    await stack.recorder.wait("finished", job_id)
    kinds = [(kind, job.status.value) for kind, job in stack.recorder.events if job.id == job_id]
    assert kinds == [("submitted", "pending"), ("started", "processing"), ("finished", "completed")]


async def test_failing_observer_does_not_break_jobs(serve: Any, http: httpx.AsyncClient) -> None:
    class Broken:
        @hookimpl
        def job_started(self, job: Any) -> None:
            raise RuntimeError("observer bug")

    stack = await build_stack(serve, plugins=(Broken(),))
    submitted = await stack.submit(http, "embeddings", json={"model": "m", "input": "x"})
    assert (await stack.finish(http, "embeddings", submitted)).json()["status"] == "completed"
