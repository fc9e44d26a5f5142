"""Two instances (each a real uvicorn server) share one real Redis: an endpoint created through
one instance's management API is used by the other, a secret rotated on one signs on the other,
and the store keeps no signing secret or header value in clear."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from bifrost_async import AsyncJobsMiddleware
from bifrost_async.builtin.webhooks.plugin import WebhooksPlugin, verify
from bifrost_async.testing import WebhookRecordsContract
from tests.apps import make_app
from tests.webhook_support import FAST, Receiver, Reports

from bifrost_async_redis import RedisJobStore
from bifrost_async_redis.options import RedisStoreOptions
from tests.conftest import RunningServer

TOKEN = "operator-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


class TestRedisWebhookRecords(WebhookRecordsContract):
    """The store capability's contract, on the real Redis."""

    @pytest.fixture
    async def records(self, redis_url: str) -> AsyncIterator[Any]:
        store = RedisJobStore(
            RedisStoreOptions(url=redis_url, sweep_interval=0), clock=lambda: 0.0, max_jobs=10
        )
        await store.start()
        yield store
        await store.close()


async def test_two_instances_share_endpoints_and_secrets(redis_url: str) -> None:
    receiver = Receiver([200])
    await receiver.start()
    instances: list[tuple[WebhooksPlugin, Reports, RunningServer]] = []
    reports = Reports()  # one for both: either instance may deliver from the shared outbox
    for _ in range(2):
        plugin = WebhooksPlugin(policy=FAST, on_delivery=reports, admin_token=TOKEN, refresh_seconds=0.05)
        middleware = AsyncJobsMiddleware(
            make_app(), plugins=[plugin], store="redis", store_options={"url": redis_url, "sweep_interval": 0}
        )
        server = RunningServer(middleware)
        await server.start()
        instances.append((plugin, reports, server))
    (_, _, a), (plugin_b, _, b) = instances
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            body = {"name": "billing", "url": receiver.url, "events": ["async_job.completed"],
                    "allow_private_network": True, "headers": {"X-Key": "HEADER-VALUE-51c2"}}  # fmt: skip
            created = (await http.post(f"{a.url}/api/webhooks", headers=ADMIN, json=body)).json()
            endpoint_id, old = created["endpoint"]["id"], created["secret"]
            listed = (await http.get(f"{b.url}/api/webhooks", headers=ADMIN)).json()
            assert [e["id"] for e in listed["endpoints"]] == [endpoint_id]  # B sees A's endpoint

            while "billing" not in plugin_b.endpoints:  # B's refresh loop picks A's change up
                plugin_b.refreshed.clear()
                await asyncio.wait_for(plugin_b.refreshed.wait(), 10)
            hook = {"x-bf-async-webhook": "billing"}
            job = {"model": "m", "input": "x"}
            first = await http.post(f"{b.url}/v1/async/embeddings", json=job, headers=hook)
            assert first.status_code == 202, first.text
            assert (await reports.wait_for(first.json()["id"])).outcome == "delivered"
            assert verify(old, receiver.attempts[-1]["headers"], receiver.attempts[-1]["raw"])
            assert receiver.attempts[-1]["headers"]["X-Key"] == "HEADER-VALUE-51c2"

            new = (await http.post(f"{a.url}/api/webhooks/{endpoint_id}/rotate-secret", headers=ADMIN)).json()
            second = await http.post(f"{b.url}/v1/async/embeddings", json=job, headers=hook)
            assert (await reports.wait_for(second.json()["id"])).outcome == "delivered"
            last = receiver.attempts[-1]
            assert verify(new["secret"], last["headers"], last["raw"])  # signed with A's rotation
            assert not verify(old, last["headers"], last["raw"])

            history = (await http.get(f"{a.url}/api/webhooks/{endpoint_id}/deliveries", headers=ADMIN)).json()
            assert history["pagination"]["total_count"] == 2  # both attempts, seen from A
            assert (await http.get(f"{a.url}/api/webhooks/{endpoint_id}", headers=ADMIN)).json()[
                "successes"
            ] == 2

        raw = aioredis.Redis.from_url(redis_url)
        try:
            dump = b"".join([bytes(await raw.dump(key) or b"") for key in await raw.keys("*")])
        finally:
            await raw.aclose()
        for secret in (old, new["secret"], "HEADER-VALUE-51c2"):
            assert secret.encode() not in dump and secret.removeprefix("whsec_").encode() not in dump
    finally:
        for _, _, server in instances:
            await server.stop()
        assert receiver.runner is not None
        await receiver.runner.cleanup()
