"""Header-driven async and virtual keys through the real ``bifrost-async serve`` in front of a
real aiohttp upstream: both providers' shapes, each status, replay to the same path without our
headers, the same job on ``/v1/async/responses/{id}``, TTL, cross-header keys, the 404s, the
unknown-key 400 (keys from a file) and the unsupported-route 400."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.proxy_support import ProxyProcess, run_proxy, wait_job
from tests.proxy_upstream import STATE, UpstreamState, make_upstream

ALPHA, BETA = "sk-bf-alpha-0001", "sk-bf-beta-0002"
ASYNC = {"x-bf-async": "true"}


@pytest.fixture
async def upstream(aiohttp_server: Any) -> Any:
    return await aiohttp_server(make_upstream())


@pytest.fixture
async def proxy(upstream: Any, tmp_path: Path) -> AsyncIterator[ProxyProcess]:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# accepted virtual keys\n{ALPHA}\n{BETA}\n")
    url = f"http://127.0.0.1:{upstream.port}"
    async with run_proxy(url, "--concurrency", "1", "--api-keys-file", str(keys)) as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15) as http:
        yield http


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def test_openai_route_end_to_end(proxy: ProxyProcess, upstream: Any, client: httpx.AsyncClient) -> None:
    state: UpstreamState = upstream.app[STATE]
    path = "/openai/v1/responses"
    try:
        first = await client.post(
            proxy.url + path,
            json={"model": "gate/one", "input": "hi"},
            headers={**ASYNC, "x-bf-vk": ALPHA, "x-bf-async-job-result-ttl": "90"},
        )
        assert first.status_code == 200, first.text
        body = first.json()
        assert body["object"] == "response" and body["status"] == "pending" and body["model"] == "gate/one"
        await asyncio.wait_for(state.gated.wait(), 15)  # the upstream holds it: processing
        second = await client.post(proxy.url + path, json={"model": "m"}, headers={**ASYNC, "x-bf-vk": ALPHA})
        retrieve = {"x-bf-async-id": body["id"], "Authorization": f"Bearer {ALPHA}"}
        running = await client.post(proxy.url + path, headers=retrieve)
        assert running.status_code == 200 and running.json()["status"] == "processing"
        queued = await client.post(
            proxy.url + path, headers={"x-bf-async-id": second.json()["id"], "x-bf-vk": ALPHA}
        )
        assert queued.json()["status"] == "pending"  # one worker, busy with the first
        for headers in ({"x-bf-async-id": body["id"], "x-bf-vk": BETA}, {"x-bf-async-id": body["id"]}):
            hidden = await client.post(proxy.url + path, headers=headers)
            assert (
                hidden.status_code == 404 and hidden.json()["error"]["message"] == "job not found or expired"
            )
    finally:
        state.gate.set()
    polled = await wait_job(
        client, f"{proxy.url}/v1/async/responses/{body['id']}", headers={"x-api-key": ALPHA}
    )
    job = polled.json()
    assert job["status"] == "completed"
    assert _seconds(job["expires_at"]) - _seconds(job["completed_at"]) == pytest.approx(90, abs=0.01)
    done = await client.post(proxy.url + path, content=b"{", headers={**retrieve, **ASYNC})
    assert done.status_code == 200
    assert done.json() == {"path": path, "model": "gate/one", "files": {}, "auth": {"x-bf-vk": ALPHA}}
    seen = next(info for info in state.seen if info["fields"].get("model") == "gate/one")
    assert seen["path"] == path  # replayed to the same path, without our headers
    assert not {"x-bf-async", "x-bf-async-id", "x-bf-async-job-result-ttl"} & set(seen["headers"])


async def test_anthropic_route_failed_job_and_unsupported_route(
    proxy: ProxyProcess, upstream: Any, client: httpx.AsyncClient
) -> None:
    path = "/anthropic/v1/messages"
    submitted = await client.post(
        proxy.url + path, json={"model": "fail/429"}, headers={**ASYNC, "x-api-key": BETA}
    )
    body = submitted.json()
    assert submitted.status_code == 200
    assert body == {
        "id": body["id"],
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "fail/429",
    }
    await wait_job(client, f"{proxy.url}/v1/async/responses/{body['id']}", headers={"x-goog-api-key": BETA})
    failed = await client.post(proxy.url + path, headers={"x-bf-async-id": body["id"], "x-bf-vk": BETA})
    assert failed.status_code == 429
    assert failed.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "upstream refused model fail/429"},
    }
    other = await client.post(
        proxy.url + "/v1/responses", headers={"x-bf-async-id": body["id"], "x-bf-vk": BETA}
    )
    assert other.status_code == 404  # no conversion between providers
    unsupported = await client.post(proxy.url + "/v1/chat/completions", json={"model": "m"}, headers=ASYNC)
    assert unsupported.status_code == 400
    assert unsupported.json()["error"]["message"] == "async operation is not supported on this route"


async def test_unknown_virtual_key_is_refused_at_submit(
    proxy: ProxyProcess, upstream: Any, client: httpx.AsyncClient
) -> None:
    state: UpstreamState = upstream.app[STATE]
    for url, headers in (
        ("/v1/responses", {**ASYNC, "Authorization": "Bearer sk-bf-unknown"}),
        ("/v1/async/responses", {"x-bf-vk": "sk-bf-unknown"}),
    ):
        refused = await client.post(proxy.url + url, json={"model": "m"}, headers=headers)
        assert refused.status_code == 400 and refused.json()["error"]["message"] == "virtual key not found"
    keyless = await client.post(proxy.url + "/v1/responses", json={"model": "m"}, headers=ASYNC)
    assert keyless.status_code == 200  # only virtual keys configured: keyless jobs are public
    await wait_job(
        client, f"{proxy.url}/v1/async/responses/{keyless.json()['id']}", headers={"x-bf-vk": ALPHA}
    )
    assert [info["fields"].get("model") for info in state.seen] == ["m"]
