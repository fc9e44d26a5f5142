"""Issue 12.2 with the real Redis store: while its redis-server is stopped, the real CLI's
``/readyz`` answers 503 naming the store (as every submit gets 503), ``/healthz`` stays 200, and
both recover when the server is back."""

from __future__ import annotations

from typing import Any

import httpx
from redis_server import RedisServer
from tests.proxy_support import run_proxy
from tests.proxy_upstream import make_upstream

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def test_readyz_follows_the_redis_server(aiohttp_server: Any, own_redis: RedisServer) -> None:
    upstream = await aiohttp_server(make_upstream())
    own_redis.start()
    async with (
        run_proxy(
            f"http://127.0.0.1:{upstream.port}", "--store", "redis", "--store-option", f"url={own_redis.url}"
        ) as proxy,
        httpx.AsyncClient(timeout=30) as client,
    ):
        ready = await client.get(f"{proxy.url}/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["store"] == {"name": "redis", "ok": True}

        own_redis.stop()
        assert (await client.post(f"{proxy.url}/v1/async/chat/completions", json=CHAT)).status_code == 503
        ready = await client.get(f"{proxy.url}/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["down"] == ["store"] and ready.json()["store"]["ok"] is False
        assert own_redis.url not in ready.text  # the store's address is not for anonymous callers
        live = await client.get(f"{proxy.url}/healthz")
        assert live.status_code == 200 and live.json()["status"] == "degraded"

        own_redis.start()
        assert (await client.get(f"{proxy.url}/readyz")).status_code == 200
