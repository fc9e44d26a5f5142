"""``serve --webhooks FILE --metrics on``: the real CLI delivers a signed webhook and counts it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from tests.proxy_support import run_proxy
from tests.proxy_upstream import make_upstream

KEY = b"0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(KEY).decode()


async def test_serve_with_webhooks_and_metrics(aiohttp_server: Any, tmp_path: Path) -> None:
    upstream = await aiohttp_server(make_upstream())
    received: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()

    async def receive(request: web.Request) -> web.Response:
        await received.put((dict(request.headers), await request.read()))
        return web.Response(status=204)

    receiver_app = web.Application()
    receiver_app.router.add_post("/hook", receive)
    receiver = await aiohttp_server(receiver_app)
    hooks = tmp_path / "webhooks.json"
    hooks.write_text(
        json.dumps(
            {
                "billing": {
                    "url": f"http://127.0.0.1:{receiver.port}/hook",
                    "secret": SECRET,
                    "allow_private_network": True,
                }
            }
        )
    )

    token = "operator-token-0123456789"
    args = ("--webhooks", str(hooks), "--metrics", "on", "--public-url", "https://api.example.com")
    args += ("--admin-token", token)
    async with run_proxy(f"http://127.0.0.1:{upstream.port}", *args) as proxy:
        async with httpx.AsyncClient(timeout=10) as client:
            unknown = await client.post(
                f"{proxy.url}/v1/async/embeddings",
                json={"model": "m", "input": "x"},
                headers={"x-bf-async-webhook": "nope"},
            )
            assert unknown.status_code == 400 and "nope" in unknown.json()["error"]["message"]
            submitted = await client.post(
                f"{proxy.url}/v1/async/embeddings",
                json={"model": "m", "input": "x"},
                headers={"x-bf-async-webhook": "billing"},
            )
            assert submitted.status_code == 202
            headers, body = await asyncio.wait_for(received.get(), 15)
            signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
            expected = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
            assert f"v1,{expected}" in headers["webhook-signature"].split()
            event = json.loads(body)
            assert event["event"] == "async_job.completed"
            assert headers["X-Bifrost-Event"] == "async_job.completed"
            assert event["data"]["job_id"] == submitted.json()["id"]
            assert event["data"]["result_url"].startswith("https://api.example.com/v1/async/embeddings/")
            metrics = (await client.get(f"{proxy.url}/metrics")).text
            # the file seeded the managed set, which the management API lists to operators only
            managed = await client.get(f"{proxy.url}/api/webhooks", headers={"X-Bifrost-Setup-Token": token})
            assert [e["name"] for e in managed.json()["endpoints"]] == ["billing"]
            assert (await client.get(f"{proxy.url}/api/webhooks")).status_code == 401
        await proxy.stop()
        logs = proxy.logs()
    assert 'bifrost_async_jobs_submitted_total{request_type="embedding"} 1.0' in metrics
    assert 'bifrost_async_jobs_finished_total{request_type="embedding",status="completed"} 1.0' in metrics
    assert token not in logs
    assert SECRET not in logs and base64.b64encode(KEY).decode() not in logs
