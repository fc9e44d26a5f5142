"""Issue 12.2, 12.3 and 12.9: health that tells the truth. ``/readyz`` is 503 and names the store
while the store is down (``/healthz`` stays 200, liveness); an unreachable upstream is one warning
at startup; an upstream URL with a path is refused before anything starts."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx

from bifrost_async.builtin.memory import MemoryStore
from bifrost_async.hookspecs import hookimpl
from bifrost_async.jobs import Job
from bifrost_async.proxy.app import build_proxy
from bifrost_async.store import StoreContext, StoreFactory, StoreUnavailable
from tests.proxy_support import ROOT, free_port, run_proxy
from tests.proxy_upstream import make_upstream

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


class SwitchableStore(MemoryStore):
    """The memory store, but unreachable (every call raises) while ``down`` is set."""

    down = False

    async def get(self, job_id: str) -> Job | None:
        if self.down:
            raise StoreUnavailable("connection refused")
        return await super().get(job_id)

    async def create(self, job: Job) -> None:
        if self.down:
            raise StoreUnavailable("connection refused")
        await super().create(job)


class SwitchablePlugin:
    def __init__(self) -> None:
        self.store: SwitchableStore | None = None

    @hookimpl
    def register_stores(self, register: Callable[[str, StoreFactory], None]) -> None:
        def factory(context: StoreContext) -> SwitchableStore:
            self.store = SwitchableStore(context.clock, context.max_jobs)
            return self.store

        register("switchable", factory)


async def test_readyz_names_a_dead_store_and_healthz_stays_live(
    serve: Any, http: httpx.AsyncClient, aiohttp_server: Any
) -> None:
    upstream = await aiohttp_server(make_upstream())
    plugin = SwitchablePlugin()
    proxy = build_proxy(f"http://127.0.0.1:{upstream.port}", store="switchable", plugins=[plugin])
    server = await serve(proxy)
    ready = await http.get(f"{server.url}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["down"] == [] and ready.json()["store"] == {"name": "switchable", "ok": True}

    assert plugin.store is not None
    plugin.store.down = True
    submitted = await http.post(f"{server.url}/v1/async/chat/completions", json=CHAT)
    assert submitted.status_code == 503  # what a balancer must be told before it sends traffic
    ready = await http.get(f"{server.url}/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "degraded" and body["down"] == ["store"]
    assert body["store"] == {"name": "switchable", "ok": False, "error": "the job store is unavailable"}
    assert body["upstream"]["ok"] is True
    live = await http.get(f"{server.url}/healthz")
    assert live.status_code == 200 and live.json()["down"] == ["store"]

    plugin.store.down = False
    assert (await http.get(f"{server.url}/readyz")).status_code == 200

    await proxy.drain()  # shutting down: submits get 503, so not ready either
    ready = await http.get(f"{server.url}/readyz")
    assert ready.status_code == 503 and ready.json()["down"] == ["jobs"], ready.text


async def test_an_unreachable_upstream_is_one_warning_at_startup() -> None:
    async with run_proxy(f"http://127.0.0.1:{free_port()}") as proxy, httpx.AsyncClient() as client:
        ready = await client.get(f"{proxy.url}/readyz")
        # lifespan startup completes before the port answers, so the warning is already logged
        warnings = [line for line in proxy.logs().splitlines() if "upstream_unreachable_at_startup" in line]
    assert ready.status_code == 503 and ready.json()["down"] == ["upstream"]
    assert len(warnings) == 1 and '"level": "warning"' in warnings[0], warnings


def test_an_upstream_with_a_path_is_refused_before_start() -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bifrost_async",
            "serve",
            "--upstream",
            "http://127.0.0.1:9/v1",
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=60,  # a bound on a proxy that starts instead of refusing
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "without a path: pass http://127.0.0.1:9 " in lines[0]
