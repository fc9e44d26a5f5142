"""The middleware on the Redis store: 503 while Redis is down, recovery without a restart of the
service, and nothing secret in Redis. In-process (httpx's ASGI transport), real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import structlog.testing
from bifrost_async import AsyncJobsMiddleware, Job, JobStatus, hookimpl
from bifrost_async.store import StoreContext, StoreHost
from bifrost_async.testing import FakeClock, make_job, processing
from redis_server import RedisServer, redis_contents
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bifrost_async_redis import RedisJobStore, redis_store
from bifrost_async_redis.sweep import sweep_once

SUBMIT = "/v1/async/chat/completions"
BODY = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "BODY-MARKER-7f3a"}]}
SECRET = "Bearer sk-test-SECRET-51c2"


async def chat(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"choices": [{"message": {"content": "hello"}}]})


def wrapped(url: str) -> AsyncJobsMiddleware:
    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    return AsyncJobsMiddleware(app, store="redis", store_options={"url": url, "sweep_interval": 0})


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[[AsyncJobsMiddleware], httpx.AsyncClient]]:
    opened: list[tuple[AsyncJobsMiddleware, httpx.AsyncClient]] = []

    def make(app: AsyncJobsMiddleware) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        opened.append((app, client))
        return client

    yield make
    for app, client in opened:
        await client.aclose()
        await app.shutdown()


async def eventually(check: Callable[[], Awaitable[Any]], what: str, deadline: float = 10.0) -> Any:
    """Await ``check()`` until it returns something truthy, within ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not (result := await check()):
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:g} s waiting for {what}")
        await asyncio.sleep(0.02)
    return result


async def completed(client: httpx.AsyncClient, job_id: str, **kwargs: Any) -> httpx.Response:
    async def poll() -> httpx.Response | None:
        response = await client.get(f"{SUBMIT}/{job_id}", **kwargs)
        return response if response.status_code == 200 else None

    response: httpx.Response = await eventually(poll, f"job {job_id} to finish")
    return response


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert "unavailable" in response.json()["error"]["message"]


async def test_503_while_redis_is_down_then_recovers_by_itself(
    own_redis: RedisServer, client_for: Callable[[AsyncJobsMiddleware], httpx.AsyncClient]
) -> None:
    client = client_for(wrapped(own_redis.url))  # Redis not started yet: startup must not fail
    assert_unavailable(await client.post(SUBMIT, json=BODY))
    assert_unavailable(await client.get(f"{SUBMIT}/1f97b465-4c1e-4a4b-9d2e-6c3b8e0f2a11"))

    own_redis.start()  # no restart of the service: the pool connects on the next request
    first = await client.post(SUBMIT, json=BODY)
    assert first.status_code == 202, first.text
    assert (await completed(client, first.json()["id"])).json()["status"] == "completed"

    own_redis.stop()  # the pool now holds connections to a dead server
    assert_unavailable(await client.get(f"{SUBMIT}/{first.json()['id']}"))
    assert_unavailable(await client.post(SUBMIT, json=BODY))

    own_redis.start()  # without persistence the restarted server has forgotten every job
    assert (await client.get(f"{SUBMIT}/{first.json()['id']}")).status_code == 404
    again = await client.post(SUBMIT, json=BODY)
    assert again.status_code == 202, again.text
    assert (await completed(client, again.json()["id"])).json()["result"]["choices"]


async def test_redis_holds_no_credential_and_no_request_body(
    redis_url: str, client_for: Callable[[AsyncJobsMiddleware], httpx.AsyncClient]
) -> None:
    client = client_for(wrapped(redis_url))
    submitted = await client.post(SUBMIT, json=BODY, headers={"Authorization": SECRET})
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    await completed(client, job_id, headers={"Authorization": SECRET})
    assert (await client.get(f"{SUBMIT}/{job_id}")).status_code == 404  # another owner

    raw = aioredis.Redis.from_url(redis_url)
    try:
        dump = await redis_contents(raw)
    finally:
        await raw.aclose()
    assert job_id.encode() in dump
    assert b"SECRET" not in dump and b"sk-test" not in dump
    assert b"BODY-MARKER" not in dump


async def test_swept_orphan_reaches_job_finished_observers(
    redis_url: str, client_for: Callable[[AsyncJobsMiddleware], httpx.AsyncClient]
) -> None:
    """A job left ``processing`` by a dead process, which nobody polls, is failed by this process's
    sweep and announced to its observers (webhooks, metrics) like a job failed on poll."""
    finished_jobs: list[Job] = []

    class Observer:
        @hookimpl
        def job_finished(self, job: Job) -> None:
            finished_jobs.append(job)

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    options = {"url": redis_url, "sweep_interval": 0.05}
    middleware = AsyncJobsMiddleware(app, store="redis", store_options=options, plugins=[Observer()])
    client_for(middleware)
    await middleware.startup()
    assert isinstance(middleware.store, RedisJobStore)
    clock = FakeClock(start=time.time() - 60)  # the dead process ran this job a minute ago
    orphan = processing(make_job(clock, worker="dead-host:1"), clock)
    orphan.lease_expires_at = clock() + 1.5
    await middleware.store.create(orphan)
    swept = await eventually(lambda: asyncio.sleep(0, finished_jobs), "the sweep to fail the orphan")
    assert [job.id for job in swept] == [orphan.id]
    assert swept[0].status is JobStatus.FAILED and swept[0].error is not None
    assert swept[0].error["error"]["code"] == "worker_lost"


async def test_sweep_never_fails_a_job_this_process_holds(redis_url: str) -> None:
    clock = FakeClock()
    options = {"url": redis_url, "sweep_interval": 0}
    store = redis_store(StoreContext(clock=clock, max_jobs=10, options=options))
    await store.start()
    try:
        job = processing(make_job(clock), clock)
        await store.create(job)
        clock.advance(60)  # its lease ran out: say Redis was down while the renewal was due
        unattached = StoreHost.unattached(store, clock)
        store.attach(StoreHost(holds={job.id}.__contains__, fail_orphan=unattached.fail_orphan))
        assert await sweep_once(store) == []
        store.attach(unattached)
        assert await sweep_once(store) == [job.id]
    finally:
        await store.close()


@pytest.mark.parametrize("secret", [None, "a-long-random-owner-secret"])
async def test_startup_warns_when_a_shared_store_has_no_owner_secret(
    secret: str | None, redis_url: str, client_for: Callable[[AsyncJobsMiddleware], httpx.AsyncClient]
) -> None:
    """Issue 11 item 15: unkeyed owner digests in a shared Redis let its readers test guessed
    credentials; a process that starts that way says so, loudly, every time (the core's warning
    for any store registered shared, issue 17)."""
    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    options: dict[str, Any] = {"url": redis_url, "sweep_interval": 0}
    client = client_for(AsyncJobsMiddleware(app, store="redis", store_options=options, owner_secret=secret))
    with structlog.testing.capture_logs() as logs:
        assert (await client.get(f"{SUBMIT}/1f97b465-4c1e-4a4b-9d2e-6c3b8e0f2a11")).status_code == 404
    warnings = [entry for entry in logs if entry["event"] == "async_jobs.owner_secret_missing"]
    if secret is None:
        assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"
        assert "owner_secret" in warnings[0]["fix"] and warnings[0]["store"] == "redis"
    else:
        assert warnings == []
        assert not any(secret in str(entry) for entry in logs)  # the secret itself is never logged
