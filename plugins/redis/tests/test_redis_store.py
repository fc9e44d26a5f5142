"""The Redis store keeps the store contract, against a real redis-server."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
import redis.asyncio as aioredis
from bifrost_async.core.hooks import make_plugin_manager, store_registry
from bifrost_async.core.outcome import WORKER_LOST_MESSAGE
from bifrost_async.jobs import JobStatus
from bifrost_async.store import StoreContext, StoreFactory, StoreFull
from bifrost_async.testing import FakeClock, SharedStoreContract, finished, make_job, processing

from bifrost_async_redis import RedisJobStore, RedisStoreOptions, redis_store
from bifrost_async_redis.sweep import sweep_once


class TestRedisStore(SharedStoreContract):
    """The shared store contract, two instances on one real redis-server standing for two
    processes; the Redis store honours ``max_jobs`` across processes, so it is bounded."""

    bounded = True

    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        return redis_store

    @pytest.fixture
    def store_options(self, redis_url: str) -> Mapping[str, Any]:
        return {"url": redis_url, "sweep_interval": 0}


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisJobStore]:
    clock = FakeClock()
    built = redis_store(
        StoreContext(clock=clock, max_jobs=100, options={"url": redis_url, "sweep_interval": 0})
    )
    await built.start()
    yield built
    await built.close()


def test_registered_through_the_entry_point() -> None:
    assert store_registry(make_plugin_manager()).get("redis") is redis_store


async def test_finished_job_gets_redis_expiry_at_expires_at(
    store: RedisJobStore, raw: aioredis.Redis
) -> None:
    clock: FakeClock = store.clock  # type: ignore[assignment]
    job = make_job(clock, ttl=120)
    await store.create(job)
    key = store.job_key(job.id)
    assert await raw.pttl(key) == -1  # unfinished jobs never expire
    running = processing(job, clock)
    assert await store.update(running, expect=(JobStatus.PENDING,))
    done = finished(running, clock, result={"text": "hi"})
    assert await store.update(done, expect=(JobStatus.PROCESSING,))
    assert done.expires_at is not None
    assert await raw.pexpiretime(key) == math.ceil(done.expires_at * 1000)
    assert await raw.zscore(store.leases_key, job.id) is None  # finished: no lease to watch


async def test_record_is_json_without_credentials(store: RedisJobStore, raw: aioredis.Redis) -> None:
    job = make_job(store.clock)  # type: ignore[arg-type]
    await store.create(job)
    record = json.loads(await raw.hget(store.job_key(job.id), "record"))  # type: ignore[misc]
    assert record["owner"] == "digest-of-someone" and record["status"] == "pending"
    assert set(record) == set(job.to_record())


async def test_prefix_separates_deployments(redis_url: str) -> None:
    clock = FakeClock()
    stores = [
        redis_store(StoreContext(clock=clock, max_jobs=10, options={"url": redis_url, "prefix": p}))
        for p in ("a:", "b:")
    ]
    for each in stores:
        await each.start()
    try:
        job = make_job(clock)
        await stores[0].create(job)
        assert await stores[0].get(job.id) == job
        assert await stores[1].get(job.id) is None
    finally:
        for each in stores:
            await each.close()


async def test_sweep_fails_orphans_nobody_polls(store: RedisJobStore) -> None:
    clock: FakeClock = store.clock  # type: ignore[assignment]
    alive, orphan = make_job(clock), make_job(clock)
    for job in (alive, orphan):
        await store.create(job)
        assert await store.update(processing(job, clock), expect=(JobStatus.PENDING,))
    clock.advance(20)
    renewed = processing(alive, clock)  # its worker renewed the lease; the orphan's did not
    assert await store.update(renewed, expect=(JobStatus.PROCESSING,))
    clock.advance(15)
    assert await sweep_once(store) == [orphan.id]
    failed = await store.get(orphan.id)
    assert failed is not None and failed.status is JobStatus.FAILED and failed.status_code == 500
    assert failed.error is not None and failed.error["error"]["message"] == WORKER_LOST_MESSAGE
    assert failed.error["error"]["code"] == "worker_lost"
    assert (await store.get(alive.id)) == renewed
    assert await sweep_once(store) == []  # once failed, never again


async def test_sweep_frees_the_place_of_a_job_whose_hash_vanished(
    redis_url: str, raw: aioredis.Redis
) -> None:
    """Issue 11 item 14: a pending job's hash deleted by hand (or evicted) kept its ``+inf`` entry
    in the bound for good; the sweep now gives the place back."""
    clock = FakeClock()
    one = redis_store(StoreContext(clock=clock, max_jobs=1, options={"url": redis_url, "sweep_interval": 0}))
    await one.start()
    try:
        lost = make_job(clock, lease_expires_at=clock() + 30)  # as the service submits it
        await one.create(lost)
        assert await raw.delete(one.job_key(lost.id)) == 1  # the operator's DEL
        with pytest.raises(StoreFull):
            await one.create(make_job(clock))
        assert await sweep_once(one) == []  # its lease has not run out yet: nothing to judge
        clock.advance(31)
        assert await sweep_once(one) == []  # nothing to fail: the job is gone, its place freed
        assert await raw.zscore(one.jobs_key, lost.id) is None
        assert await raw.zscore(one.leases_key, lost.id) is None
        await one.create(make_job(clock))  # the place is back
    finally:
        await one.close()


def test_options_from_strings_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIFROST_ASYNC_REDIS_URL", "redis://:s3cret@cache.internal:6380/2")
    options = RedisStoreOptions.from_mapping({"max_connections": "7", "socket_timeout": "1.5"})
    assert options.url == "redis://:s3cret@cache.internal:6380/2"
    assert (options.max_connections, options.socket_timeout) == (7, 1.5)
    assert "s3cret" not in options.safe_url()
    assert RedisStoreOptions.from_mapping({"url": "redis://other:1/0"}).url == "redis://other:1/0"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"urll": "redis://x"}, "unknown redis store option"),
        ({"url": "http://x"}, "must be redis://"),
        ({"max_connections": "many"}, "must be a number"),
        ({"max_connections": 0}, "must be positive"),
    ],
)
def test_bad_options_fail_at_startup(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisStoreOptions.from_mapping(options)
