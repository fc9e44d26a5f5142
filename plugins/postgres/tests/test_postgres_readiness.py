"""The real CLI on the Postgres store: while its PostgreSQL is stopped, ``/readyz`` answers 503
naming the store (as every submit gets 503), ``/healthz`` stays 200, and both recover by
themselves when the server is back; the store URL is not shown to anonymous callers."""

from __future__ import annotations

from typing import Any

import httpx
from tests.proxy_support import run_proxy
from tests.proxy_upstream import make_upstream

from bifrost_async_postgres.server import PostgresServer

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def test_readyz_follows_the_postgres_server(aiohttp_server: Any, own_postgres: PostgresServer) -> None:
    upstream = await aiohttp_server(make_upstream())
    own_postgres.start()
    args = [
        "--store",
        "postgres",
        "--store-option",
        f"url={own_postgres.url}",
        "--store-option",
        "schema=ready",
    ]
    async with (
        run_proxy(f"http://127.0.0.1:{upstream.port}", *args) as proxy,
        httpx.AsyncClient(timeout=30) as client,
    ):
        ready = await client.get(f"{proxy.url}/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["store"] == {"name": "postgres", "ok": True}

        own_postgres.stop()
        assert (await client.post(f"{proxy.url}/v1/async/chat/completions", json=CHAT)).status_code == 503
        ready = await client.get(f"{proxy.url}/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["down"] == ["store"] and ready.json()["store"]["ok"] is False
        assert f":{own_postgres.port}" not in ready.text and "postgresql://" not in ready.text  # no address
        live = await client.get(f"{proxy.url}/healthz")
        assert live.status_code == 200 and live.json()["status"] == "degraded"

        own_postgres.start()
        assert (await client.get(f"{proxy.url}/readyz")).status_code == 200
        submitted = await client.post(f"{proxy.url}/v1/async/chat/completions", json=CHAT)
        assert submitted.status_code == 202, submitted.text
