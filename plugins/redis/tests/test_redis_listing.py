"""The Redis listing reads what the page needs, not every job the owner has (issue 11 item 6),
against a real redis-server: what Redis sends is measured with ``INFO stats``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from bifrost_async.jobs import Job, JobStatus
from bifrost_async.store import StoreContext
from bifrost_async.testing import FakeClock, finished, make_job, processing

from bifrost_async_redis import RedisJobStore, listing, redis_store

RESULT = {"text": "x" * 2000}  # a modest result, so that reading every record would show


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisJobStore]:
    built = redis_store(
        StoreContext(clock=FakeClock(), max_jobs=0, options={"url": redis_url, "sweep_interval": 0})
    )
    await built.start()
    yield built
    await built.close()


async def fill(store: RedisJobStore, count: int, pending_every: int) -> list[Job]:
    """``count`` jobs of the owner ``me``, one ``created_at`` apart; every ``pending_every``-th
    (from the oldest) stays pending, the rest complete with :data:`RESULT`. Returns the pending
    ones, newest first."""
    clock: FakeClock = store.clock  # type: ignore[assignment]
    pending = []
    for n in range(count):
        job = make_job(clock, owner="me", created_at=clock() + n, ttl=86400)
        await store.create(job)
        if n % pending_every == 0:
            pending.append(job)
            continue
        running = processing(job, clock)
        assert await store.update(running, expect=(JobStatus.PENDING,))
        assert await store.update(finished(running, clock, result=RESULT), expect=(JobStatus.PROCESSING,))
    return list(reversed(pending))


async def sent_by_redis(raw: aioredis.Redis) -> int:
    return int((await raw.info("stats"))["total_net_output_bytes"])


async def test_a_status_filter_does_not_read_every_record(store: RedisJobStore, raw: aioredis.Redis) -> None:
    """599 finished jobs of ~2 KB and 5 pending ones: before, listing ``status=pending`` fetched all
    604 records (~1.3 MB from Redis); now only the page's records cross the network."""
    pending = await fill(store, 604, pending_every=150)
    before = await sent_by_redis(raw)
    page, cursor = await store.list_jobs("me", "transcription", status=JobStatus.PENDING, limit=20)
    sent = await sent_by_redis(raw) - before
    assert page == pending and cursor is None
    assert sent < 50_000, f"Redis sent {sent} bytes for a page of {len(page)} small jobs"
    before = await sent_by_redis(raw)
    page, cursor = await store.list_jobs("me", "transcription", status=JobStatus.COMPLETED, limit=5)
    sent = await sent_by_redis(raw) - before
    assert len(page) == 5 and cursor is not None
    assert all(job.status is JobStatus.COMPLETED for job in page)
    assert sent < 6 * 2600 + 10_000, f"Redis sent {sent} bytes for a page of 5 jobs"


async def test_a_filtered_scan_is_bounded_and_resumes_with_its_cursor(
    store: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the scan bounded at 30 entries (two script runs of 15), a rare status comes back over several
    pages, some short or empty, each with a cursor; following them yields every match once, in
    order, then ``None``."""
    monkeypatch.setattr(listing, "SCAN_BOUND", 30)
    monkeypatch.setattr(listing, "SCRIPT_BATCH", 15)
    pending = await fill(store, 130, pending_every=25)  # 6 pending, far apart
    seen: list[Job] = []
    cursor: str | None = None
    pages = 0
    while True:
        page, cursor = await store.list_jobs(
            "me", "transcription", status=JobStatus.PENDING, cursor=cursor, limit=2
        )
        pages += 1
        assert len(page) <= 2
        seen += page
        if cursor is None:
            break
        assert pages < 20, "the cursor does not advance"
    assert seen == pending
    assert pages >= 5  # 130 entries, at most 30 a call: the bound was in force


async def test_a_filtered_listing_prunes_entries_whose_job_vanished(
    store: RedisJobStore, raw: aioredis.Redis
) -> None:
    pending = await fill(store, 10, pending_every=3)
    assert await raw.delete(store.job_key(pending[0].id)) == 1
    page, cursor = await store.list_jobs("me", "transcription", status=JobStatus.PENDING, limit=10)
    assert page == pending[1:] and cursor is None
    index, twin = store.owner_keys("me", "transcription")
    assert await raw.zscore(index, pending[0].id) is None and await raw.zscore(twin, pending[0].id) is None
