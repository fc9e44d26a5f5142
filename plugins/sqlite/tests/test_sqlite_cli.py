"""The real CLI with ``--store sqlite``: a file that cannot be opened is refused before anything
starts (one line, exit status 2); a corrupt database answers 503 in the contract's error shape,
never 500, and the service recovers once the file is readable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlite_proxies import SUBMIT, GatedUpstream, proxies, submit_body


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "bifrost_async", "serve", "--upstream", "http://127.0.0.1:9", "--port", "0"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BIFROST_ASYNC_")}
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, timeout=60, check=False, env={**clean, **(env or {})}
    )


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("path={tmp}/missing/jobs.db", "does not exist"),
        ("path={tmp}", "is not a file"),
        ("notify_interval=0", "notify_interval must be positive"),
        ("colour=blue", "unknown sqlite store option(s): colour"),
    ],
)
def test_unusable_options_are_one_line_and_exit_2(tmp_path: Path, option: str, expected: str) -> None:
    result = serve("--store", "sqlite", "--store-option", option.format(tmp=tmp_path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("form", ["env", "toml"])
def test_options_reach_the_store_from_env_and_toml(tmp_path: Path, form: str) -> None:
    """The store and its path arrive through the environment and a --config file as well (the
    missing directory is refused by the store's factory, so the option got there)."""
    missing = tmp_path / "missing" / "jobs.db"
    if form == "env":
        env = {
            "BIFROST_ASYNC_STORE": "sqlite",
            "BIFROST_ASYNC_STORE_OPTION": f"path={missing} busy_timeout=2",
        }
        result = serve(env=env)
    else:
        config = tmp_path / "bifrost.toml"
        config.write_text(f'store = "sqlite"\n[store_options]\npath = "{missing}"\nbusy_timeout = 2\n')
        result = serve("--config", str(config))
    assert result.returncode == 2, result.stderr
    assert "does not exist" in result.stderr and len(result.stderr.strip().splitlines()) == 1


async def test_corrupt_database_is_503_then_recovers(aiohttp_server: Any, tmp_path: Path) -> None:
    gated = GatedUpstream()
    gated.let_go("after")
    upstream = await aiohttp_server(gated.app())
    db = tmp_path / "jobs.db"
    db.write_bytes(b"definitely not an SQLite database\n" * 300)
    url = f"http://127.0.0.1:{upstream.port}"
    async with (
        proxies(url, db, count=1, ready="/healthz") as (proxy,),
        httpx.AsyncClient(timeout=30) as client,
    ):
        ready = await client.get(f"{proxy.url}/readyz")
        assert ready.status_code == 503 and "store" in ready.json()["down"]
        refused = await client.post(f"{proxy.url}{SUBMIT}", json=submit_body("before"))
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "1"
        body = refused.json()
        assert body["status_code"] == 503 and body["error"]["message"] and "extra_fields" in body
        assert "not a database" not in refused.text  # the cause is logged, not shown to clients
        polled = await client.get(f"{proxy.url}{SUBMIT}/2b1e6d0c-5c8a-4b8e-9a57-0c8a1f0e3d11")
        assert polled.status_code == 503, polled.text
        db.unlink()  # the operator replaces the file: the store opens it afresh
        accepted = await client.post(f"{proxy.url}{SUBMIT}", json=submit_body("after"))
        assert accepted.status_code == 202, accepted.text
        assert "sqlite_store.unavailable" in proxy.output()
