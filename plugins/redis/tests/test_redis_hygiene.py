"""Keys that outlive their jobs, crafted cursors and Redis error replies, against a real
redis-server: nothing is left without an expiry once every job has expired, a cursor the store
did not make is a 400 (never a 500), and a Redis error reply is a 503 (never a 500)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import redis.asyncio as aioredis
from bifrost_async import AsyncJobsMiddleware
from bifrost_async.jobs import JobStatus, new_job_id
from bifrost_async.store import StoreContext, StoreUnavailable
from bifrost_async.testing import FakeClock, finished, make_job, processing
from redis_server import RedisServer
from test_redis_service import SUBMIT, client_for, wrapped  # noqa: F401 - client_for is a fixture

from bifrost_async_redis import RedisJobStore, redis_store

PREFIX = "bifrost-async:"


async def started(url: str, clock: Callable[[], float]) -> RedisJobStore:
    store = redis_store(StoreContext(clock=clock, max_jobs=1000, options={"url": url, "sweep_interval": 0}))
    await store.start()
    return store


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisJobStore]:
    built = await started(redis_url, FakeClock())
    yield built
    await built.close()


async def keys_without_expiry(raw: aioredis.Redis) -> list[str]:
    """Every key that exists and never expires (PTTL -1)."""
    return sorted([key.decode() async for key in raw.scan_iter() if await raw.pttl(key) == -1])


async def finish(store: RedisJobStore, owner: str, ttl: int, clock: FakeClock) -> str:
    job = make_job(clock, owner=owner, ttl=ttl)
    await store.create(job)
    running = processing(job, clock)
    assert await store.update(running, expect=(JobStatus.PENDING,))
    assert await store.update(finished(running, clock, result=1), expect=(JobStatus.PROCESSING,))
    return job.id


async def test_no_key_without_expiry_is_left_once_every_job_expired(
    store: RedisJobStore, raw: aioredis.Redis
) -> None:
    clock: FakeClock = store.clock  # type: ignore[assignment]
    for n in range(20):
        await finish(store, "" if n % 2 else "someone", 1, clock)
    assert await keys_without_expiry(raw) == []  # every index expires with its last job
    owner_keys = sorted([k.decode() async for k in raw.scan_iter(f"{PREFIX}owner*")])
    assert owner_keys == sorted(store.owner_keys("someone", "transcription"))  # none for public jobs
    await asyncio.sleep(1.3)  # Redis expires by the real clock; the fake one started at real time
    assert [key async for key in raw.scan_iter()] == []


async def test_owner_index_never_expires_while_it_holds_an_unfinished_job(
    store: RedisJobStore, raw: aioredis.Redis
) -> None:
    clock: FakeClock = store.clock  # type: ignore[assignment]
    await finish(store, "me", 1, clock)
    waiting = make_job(clock, owner="me")
    await store.create(waiting)
    index, expiry = store.owner_keys("me", "transcription")
    assert await keys_without_expiry(raw) == sorted(
        [store.jobs_key, store.job_key(waiting.id), index, expiry]
    )
    await asyncio.sleep(1.3)
    clock.advance(1.3)
    assert await store.list_jobs("me", "transcription") == ([waiting], None)
    running = processing(waiting, clock)
    assert await store.update(running, expect=(JobStatus.PENDING,))
    done = finished(running, clock, result=1)
    assert await store.update(done, expect=(JobStatus.PROCESSING,))
    assert await raw.zcard(index) == 1  # the expired job's entry was trimmed on the way
    assert await keys_without_expiry(raw) == []
    assert done.expires_at is not None
    for key in (index, expiry, store.jobs_key):
        assert await raw.pexpiretime(key) == await raw.pexpiretime(store.job_key(waiting.id))


async def test_delete_keeps_the_index_expiry_fitted(store: RedisJobStore, raw: aioredis.Redis) -> None:
    clock: FakeClock = store.clock  # type: ignore[assignment]
    kept = await finish(store, "me", 60, clock)
    unfinished = make_job(clock, owner="me")
    await store.create(unfinished)
    assert await store.delete(unfinished.id)
    assert await keys_without_expiry(raw) == []
    assert await store.delete(kept)
    assert [key async for key in raw.scan_iter(f"{PREFIX}owner*")] == []


def cursor_of(created: str, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created}|{job_id}".encode()).decode().rstrip("=")


CRAFTED = [
    cursor_of("nan", new_job_id()),
    cursor_of("inf", new_job_id()),
    cursor_of("-inf", new_job_id()),
    cursor_of("1700000000.0", "not-a-job-id"),
]
#: Fixed test ids: the cursors hold fresh job ids, and pytest-xdist needs every worker to collect
#: the same test names.
CRAFTED_IDS = ["nan", "inf", "-inf", "not-a-job-id"]


@pytest.mark.parametrize("cursor", CRAFTED, ids=CRAFTED_IDS)
async def test_crafted_cursor_is_a_value_error_from_the_store(store: RedisJobStore, cursor: str) -> None:
    await store.create(make_job(store.clock, owner="me"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid cursor"):
        await store.list_jobs("me", "transcription", cursor=cursor)


@pytest.mark.parametrize("cursor", CRAFTED, ids=CRAFTED_IDS)
async def test_crafted_cursor_is_a_400_from_the_service(
    redis_url: str,
    client_for: Callable[[AsyncJobsMiddleware], httpx.AsyncClient],  # noqa: F811 - the fixture
    cursor: str,
) -> None:
    client = client_for(wrapped(redis_url))
    response = await client.get(SUBMIT, params={"cursor": cursor}, headers={"Authorization": "Bearer k"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_cursor"


async def until_busy(admin: aioredis.Redis, script: asyncio.Task[object], deadline: float = 10.0) -> None:
    """Wait until Redis answers ``BUSY`` (the script has run past ``busy-reply-threshold``)."""
    async with asyncio.timeout(deadline):
        while True:
            assert not script.done(), f"the script ended: {script}"
            try:
                await admin.ping()
            except aioredis.ResponseError as exc:
                if str(exc).startswith("BUSY"):
                    return
                raise
            await asyncio.sleep(0.01)  # PONG: the script has not reached Redis yet


async def test_redis_error_reply_is_store_unavailable(own_redis: RedisServer) -> None:
    """A real ``BUSY`` reply (another client's script runs past ``busy-reply-threshold``) is a
    ``ResponseError`` in redis-py; the store turns it into ``StoreUnavailable`` (503)."""
    own_redis.start()
    store = await started(own_redis.url, time.time)
    blocker = aioredis.Redis.from_url(own_redis.url)
    admin = aioredis.Redis.from_url(own_redis.url)
    try:
        job = make_job(FakeClock())
        await store.create(job)
        await admin.config_set("busy-reply-threshold", 20)
        busy = asyncio.create_task(blocker.eval("while true do end", 0))  # type: ignore[misc]
        await until_busy(admin, busy)
        with pytest.raises(StoreUnavailable, match="ResponseError"):
            await store.get(job.id)
        with pytest.raises(StoreUnavailable):
            await store.create(make_job(FakeClock()))
        await admin.script_kill()
        with pytest.raises(Exception, match="killed"):
            await busy
        assert await store.get(job.id) == job  # and the store works again at once
    finally:
        with contextlib.suppress(Exception):  # never leave the server stuck (its stop would hang)
            await admin.script_kill()
        await store.close()
        await blocker.aclose()
        await admin.aclose()


async def test_scripts_reload_after_script_flush(store: RedisJobStore, raw: aioredis.Redis) -> None:
    """``NOSCRIPT`` after a ``SCRIPT FLUSH`` (or a Redis restart) is handled by redis-py's script
    objects, which reload the script and run it again: no error reaches the caller."""
    clock: FakeClock = store.clock  # type: ignore[assignment]
    await finish(store, "me", 60, clock)
    await raw.script_flush()
    job_id = await finish(store, "me", 60, clock)
    await raw.script_flush()
    assert await store.delete(job_id)
