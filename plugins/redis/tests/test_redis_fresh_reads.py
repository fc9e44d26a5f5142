"""A wait right after a read or a write of the same unfinished job (a paced poll; the runner's
cancellation watch after its start write) does not read the job again, unless the job may have
ended in between, which the job-ended subscription tells: a cancel made by another process
between the start write and the watch is still seen."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from bifrost_async.core.waiters import _SETTLED_BYTES, Waiters
from bifrost_async.jobs import JobStatus
from bifrost_async.store import StoreContext
from bifrost_async.testing import FakeClock, finished, make_job, processing, until

from bifrost_async_redis import RedisJobStore, redis_store


@pytest.fixture
async def stores(redis_url: str) -> AsyncIterator[list[RedisJobStore]]:
    """Two stores on one Redis, standing for two processes."""
    clock = FakeClock()
    made = [
        redis_store(StoreContext(clock=clock, max_jobs=100, options={"url": redis_url, "sweep_interval": 0}))
        for _ in range(2)
    ]
    for store in made:
        await store.start()
        async with asyncio.timeout(10):
            await store.subscribed.wait()
    yield made
    for store in made:
        await store.close()


def count_reads(store: RedisJobStore, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every ``HGET`` the store sends (its reads of a job)."""
    reads: list[Any] = []
    real = store.redis.hget

    def counting(*args: Any) -> Any:
        reads.append(args)
        return real(*args)

    monkeypatch.setattr(store.redis, "hget", counting)
    return reads


async def test_a_wait_right_after_a_read_does_not_read_again(
    stores: list[RedisJobStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, other = stores
    clock: FakeClock = store.clock  # type: ignore[assignment]
    job = make_job(clock)
    await store.create(job)
    reads = count_reads(store, monkeypatch)
    assert await store.get(job.id) == job  # the poll's read
    waiting = asyncio.create_task(store.wait(job.id, 3600))  # the paced poll's wait
    await until(lambda: len(store.waiters) > 0)
    assert len(reads) == 1
    running = processing(job, clock)
    assert await other.update(running, expect=(JobStatus.PENDING,))
    done = finished(running, clock, result={"text": "hi"})
    assert await other.update(done, expect=(JobStatus.PROCESSING,))
    assert await asyncio.wait_for(waiting, 30) == done  # woken by the other process's end
    assert len(reads) == 2  # the wake-up's read, nothing else


async def test_the_watch_after_a_start_write_does_not_read(
    stores: list[RedisJobStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, other = stores
    clock: FakeClock = store.clock  # type: ignore[assignment]
    job = make_job(clock)
    await store.create(job)
    reads = count_reads(store, monkeypatch)
    running = processing(job, clock)
    assert await store.update(running, expect=(JobStatus.PENDING,))  # the runner's start write
    watch = asyncio.create_task(store.wait(job.id, 3600))
    await until(lambda: len(store.waiters) > 0)
    assert reads == []
    assert await other.delete(job.id)  # a cancel elsewhere
    assert await asyncio.wait_for(watch, 30) is None
    assert len(reads) == 1


async def test_a_cancel_between_the_start_write_and_the_watch_is_seen(stores: list[RedisJobStore]) -> None:
    store, other = stores
    clock: FakeClock = store.clock  # type: ignore[assignment]
    job = make_job(clock)
    await store.create(job)
    running = processing(job, clock)
    assert await store.update(running, expect=(JobStatus.PENDING,))  # remembered as processing
    heard = store.waiters.add(job.id)  # only to know when this process has heard of the cancel
    cancelled = finished(running, clock, error={"message": "cancelled", "type": "cancelled"})
    assert await other.update(cancelled, expect=(JobStatus.PROCESSING,))
    async with asyncio.timeout(30):
        await heard.wait()
    store.waiters.discard(job.id, heard)
    # the watch starts only now: the remembered job is stale, so it reads and sees the cancel
    # (were the memory trusted, this wait would last its hour: the bound fails the test instead)
    assert await asyncio.wait_for(store.wait(job.id, 3600), 30) == cancelled


async def test_a_job_ended_here_wakes_its_waiters_without_a_read(
    stores: list[RedisJobStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, other = stores
    clock: FakeClock = store.clock  # type: ignore[assignment]
    job = make_job(clock)
    await store.create(job)
    running = processing(job, clock)
    assert await store.update(running, expect=(JobStatus.PENDING,))
    reads = count_reads(store, monkeypatch)
    polls = [asyncio.create_task(store.wait(job.id, 3600)) for _ in range(2)]  # two paced polls
    await until(lambda: len(store.waiters) == 2)
    done = finished(running, clock, result={"text": "hi"})
    assert await store.update(done, expect=(JobStatus.PROCESSING,))  # the runner's end, here
    assert await asyncio.wait_for(asyncio.gather(*polls), 30) == [done, done]
    assert len(reads) == 1  # the second poll's first read; the end is handed to both
    assert await other.get(job.id) == done


async def test_a_wait_begun_after_the_end_here_reads(stores: list[RedisJobStore]) -> None:
    """The ended job is handed only to the waits under way when it ended: a later one reads, so
    a delete made elsewhere in between is seen."""
    store, other = stores
    clock: FakeClock = store.clock  # type: ignore[assignment]
    job = make_job(clock)
    await store.create(job)
    running = processing(job, clock)
    assert await store.update(running, expect=(JobStatus.PENDING,))
    under_way = store.waiters.add(job.id)
    done = finished(running, clock, result={"text": "hi"})
    assert await store.update(done, expect=(JobStatus.PROCESSING,))
    assert under_way.is_set() and store.waiters.handed(under_way) == done
    store.waiters.discard(job.id, under_way)
    assert await other.delete(job.id)
    assert await asyncio.wait_for(store.wait(job.id, 3600), 30) is None


def test_a_large_ended_job_is_not_handed() -> None:
    waiters = Waiters()
    clock = FakeClock()
    job = finished(processing(make_job(clock), clock), clock, result={"text": "x"})
    job.result_bytes = _SETTLED_BYTES + 1
    event = waiters.add(job.id)
    waiters.settle(job)
    assert event.is_set() and waiters.handed(event) is None
