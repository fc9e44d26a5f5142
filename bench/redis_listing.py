"""The Redis store's listing: one owner with many jobs, the first page with and without a filter.

``python -m bench.redis_listing [JOBS]`` (default 3000) fills a throw-away ``redis-server`` with
one owner's jobs (finished with ~2 KB results, every 600th left pending) and times the first
page of ``status=pending``, ``status=completed`` and no filter (``limit=20``, median of 5), with
the bytes Redis sent for it (``INFO stats``), which do not depend on the machine's load. Not part
of ``bench/run.py``: it measures the store alone, in process, no HTTP.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

import redis.asyncio as aioredis

from bifrost_async.jobs import JobStatus
from bifrost_async.store import StoreContext
from bifrost_async.testing import FakeClock, finished, make_job, processing

from .harness import RedisServer, started


async def measure(url: str, count: int) -> None:
    from bifrost_async_redis import redis_store  # the plugin is optional for the other benchmarks

    clock = FakeClock()
    store = redis_store(StoreContext(clock=clock, max_jobs=0, options={"url": url, "sweep_interval": 0}))
    await store.start()
    raw = aioredis.Redis.from_url(url)
    try:
        for n in range(count):
            job = make_job(clock, owner="me", created_at=clock() + n * 0.001, ttl=86400)
            await store.create(job)
            if n % 600 == 0:
                continue  # stays pending
            running = processing(job, clock)
            await store.update(running, expect=(JobStatus.PENDING,))
            done = finished(running, clock, result={"text": "x" * 2000})
            await store.update(done, expect=(JobStatus.PROCESSING,))
        filters = (
            ("status=pending", JobStatus.PENDING),
            ("status=completed", JobStatus.COMPLETED),
            ("none", None),
        )
        for label, status in filters:
            times: list[float] = []
            sent: list[int] = []
            for _ in range(5):
                before = int((await raw.info("stats"))["total_net_output_bytes"])
                start = time.perf_counter()
                page, cursor = await store.list_jobs("me", "transcription", status=status, limit=20)
                times.append(time.perf_counter() - start)
                sent.append(int((await raw.info("stats"))["total_net_output_bytes"]) - before)
            print(
                f"{count} jobs, filter {label:17s}: {statistics.median(times) * 1000:7.1f} ms, "
                f"Redis sent {statistics.median(sent) / 1024:8.1f} KiB, "
                f"{len(page)} jobs, more: {cursor is not None}"
            )
    finally:
        await raw.aclose()
        await store.close()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    redis = RedisServer()
    with started(redis):
        asyncio.run(measure(redis.url, count))


if __name__ == "__main__":
    main()
