"""One path from a flag, the environment or a TOML file to a store's factory (docs/STORES.md,
"Options"), the ``--lease-seconds`` option, and the core's warning for a shared store run
without ``owner_secret``."""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import structlog
from starlette.applications import Starlette

from bifrost_async import AsyncJobsMiddleware, hookimpl
from bifrost_async.cli import ConfigError, build_app, build_parser, resolve
from bifrost_async.store import JobStore, RegisterStore, StoreContext, parse_store_options

#: The repository (found from here, so this module works wherever the tests directory puts it).
ROOT = next(
    p for p in Path(__file__).resolve().parents if (p / "examples" / "custom_store_plugin.py").exists()
)


def _example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` under a name of this module's own."""
    spec = importlib.util.spec_from_file_location(
        f"store_options_path_{name}", ROOT / "examples" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


dict_store = _example("custom_store_plugin").dict_store


@dataclasses.dataclass(frozen=True)
class FileOptions:
    path: pathlib.Path = pathlib.Path("jobs.db")
    busy_timeout: float = 5.0


class FileStorePlugin:
    """Registers ``file``, which parses its options and records what its factory received."""

    def __init__(self, *, shared: bool = False) -> None:
        self.shared = shared
        self.received: list[FileOptions] = []

    @hookimpl
    def register_stores(self, register: RegisterStore) -> None:
        def factory(context: StoreContext) -> JobStore:
            self.received.append(parse_store_options(FileOptions, context.options, store="file"))
            return dict_store(StoreContext(clock=context.clock, max_jobs=context.max_jobs, options={}))

        register("file", factory, shared=self.shared)


def _resolve(argv: list[str], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    return resolve(build_parser().parse_args(["serve", "--upstream", "http://u:1", *argv]), env or {})


def _factory_sees(store_options: Mapping[str, str]) -> FileOptions:
    plugin = FileStorePlugin()
    AsyncJobsMiddleware(Starlette(), store="file", store_options=store_options, plugins=[plugin])
    return plugin.received[-1]


def test_a_path_with_a_space_reaches_the_factory_from_flag_env_and_toml(tmp_path: Path) -> None:
    expected = FileOptions(pathlib.Path("/srv/my jobs.db"), 2.5)
    flag = _resolve(["--store-option", "path=/srv/my jobs.db", "--store-option", "busy_timeout=2.5"])
    env = _resolve([], {"BIFROST_ASYNC_STORE_OPTION": "path='/srv/my jobs.db' busy_timeout=2.5"})
    config = tmp_path / "proxy.toml"
    config.write_text('[store_options]\npath = "/srv/my jobs.db"\nbusy_timeout = 2.5\n')
    toml = _resolve(["--config", str(config)])
    for values in (flag, env, toml):
        assert _factory_sees(values["store_options"]) == expected, values["store_options"]


def test_env_store_options_split_like_a_shell() -> None:
    env = {"BIFROST_ASYNC_STORE_OPTION": 'url=redis://h/0 path="/a b/c.db" name=plain'}
    assert _resolve([], env)["store_options"] == {"url": "redis://h/0", "path": "/a b/c.db", "name": "plain"}
    with pytest.raises(ConfigError, match=r"^BIFROST_ASYNC_STORE_OPTION: cannot split into KEY=VALUE"):
        _resolve([], {"BIFROST_ASYNC_STORE_OPTION": "path='/srv/my jobs.db"})  # unclosed quote


def test_lease_seconds_from_flag_env_and_toml_reaches_the_middleware(tmp_path: Path) -> None:
    assert _resolve([])["lease_seconds"] == 30.0
    assert _resolve(["--lease-seconds", "12.5"])["lease_seconds"] == 12.5
    assert _resolve([], {"BIFROST_ASYNC_LEASE_SECONDS": "45"})["lease_seconds"] == 45.0
    config = tmp_path / "proxy.toml"
    config.write_text("lease_seconds = 90\n")
    values = _resolve(["--config", str(config)])
    assert values["lease_seconds"] == 90
    assert build_app(values).config.lease_seconds == 90


@pytest.mark.parametrize(
    ("shared", "secret", "warned"), [(True, None, 1), (True, "s" * 32, 0), (False, None, 0)]
)
async def test_a_shared_store_without_owner_secret_is_warned_about_once(
    shared: bool, secret: str | None, warned: int
) -> None:
    app = AsyncJobsMiddleware(
        Starlette(), store="file", plugins=[FileStorePlugin(shared=shared)], owner_secret=secret
    )
    with structlog.testing.capture_logs() as logs:
        await app.startup()
        await app.shutdown()
    warnings = [entry for entry in logs if entry["event"] == "async_jobs.owner_secret_missing"]
    assert len(warnings) == warned, logs
    if warned:
        assert warnings[0]["log_level"] == "warning" and warnings[0]["store"] == "file"
        assert "BIFROST_ASYNC_OWNER_SECRET" in warnings[0]["fix"]
    assert secret is None or not any(secret in str(entry) for entry in logs)  # never logged


def test_the_stores_verb_lists_each_store_whether_it_is_shared_and_its_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bifrost_async", "stores"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert "memory: one process only (plugin bifrost_async.builtin.memory)" in lines
    assert "max_bytes" in result.stdout  # from the memory factory's docstring
    if "redis: shared by every process (plugin redis)" in lines:  # with plugins/redis installed
        assert "``sweep_interval``" in result.stdout
