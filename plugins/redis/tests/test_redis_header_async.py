"""Header-driven async and virtual keys on the Redis store: the provider mark and the virtual-key
owner survive the store, so a retrieve on another process sharing it answers the same."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from bifrost_async import AsyncJobsMiddleware
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MESSAGES = "/anthropic/v1/messages"


async def messages(request: Request) -> JSONResponse:
    body = await request.json()
    return JSONResponse({"id": "msg_1", "type": "message", "model": body["model"], "content": []})


def wrapped(url: str) -> AsyncJobsMiddleware:
    app = Starlette(routes=[Route(MESSAGES, messages, methods=["POST"])])
    return AsyncJobsMiddleware(app, store="redis", store_options={"url": url, "sweep_interval": 0})


@pytest.fixture
async def two(redis_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    apps = (wrapped(redis_url), wrapped(redis_url))  # two instances sharing one Redis
    clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") for app in apps]
    for app in apps:
        await app.startup()
    yield clients[0], clients[1]
    for client, app in zip(clients, apps, strict=True):
        await client.aclose()
        await app.shutdown()


async def test_header_mode_job_read_by_another_instance(
    two: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    first, second = two
    submitted = await first.post(
        MESSAGES, json={"model": "claude-x"}, headers={"x-bf-async": "true", "x-api-key": "sk-bf-team-a"}
    )
    assert submitted.status_code == 200
    job_id = submitted.json()["id"]
    poll = f"/v1/async/responses/{job_id}?wait=10"  # long-poll: woken by the job's end
    assert (await second.get(poll, headers={"x-bf-vk": "sk-bf-team-a"})).json()["status"] == "completed"
    done = await second.post(
        MESSAGES, headers={"x-bf-async-id": job_id, "Authorization": "Bearer sk-bf-team-a"}
    )
    assert done.status_code == 200 and done.json()["id"] == "msg_1"
    other = await second.post("/v1/responses", headers={"x-bf-async-id": job_id, "x-bf-vk": "sk-bf-team-a"})
    assert other.status_code == 404  # the provider mark came back from Redis
    stranger = await second.post(MESSAGES, headers={"x-bf-async-id": job_id, "x-bf-vk": "sk-bf-team-b"})
    assert stranger.status_code == 404 and stranger.json()["type"] == "error"
