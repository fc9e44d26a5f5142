"""The memory store keeps the store contract, and bounds the bytes it holds."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bifrost_async.builtin.memory import JOB_OVERHEAD, MemoryStore, memory_store
from bifrost_async.jobs import JobStatus
from bifrost_async.store import StoreContext, StoreFactory, StoreFull
from bifrost_async.testing import FakeClock, StoreContract, WebhookRecordsContract, make_job
from tests.helpers import build_stack


class TestMemoryWebhookRecords(WebhookRecordsContract):
    """The memory store keeps the managed webhook endpoints too."""

    @pytest.fixture
    def records(self) -> MemoryStore:
        return MemoryStore(clock=FakeClock(), max_jobs=10)


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        return memory_store


def _store(clock: FakeClock, **options: Any) -> MemoryStore:
    return memory_store(StoreContext(clock=clock, max_jobs=100, options=options))


async def _finish(store: MemoryStore, clock: FakeClock, result_bytes: int, ttl: int = 60) -> str:
    job = make_job(clock, ttl=ttl)
    await store.create(job)
    job.status = JobStatus.PROCESSING
    assert await store.update(job, expect={JobStatus.PENDING})
    job.status = JobStatus.COMPLETED
    job.status_code = 200
    job.result = {"text": "x" * result_bytes}
    job.result_bytes = result_bytes
    job.completed_at = clock.now
    job.expires_at = clock.now + ttl
    assert await store.update(job, expect={JobStatus.PROCESSING})
    return job.id


async def test_a_full_byte_budget_refuses_new_jobs_and_frees_on_expiry_and_delete() -> None:
    clock = FakeClock()
    store = _store(clock, max_bytes=3 * (JOB_OVERHEAD + 10_000))
    short = await _finish(store, clock, 10_000, ttl=10)
    kept = await _finish(store, clock, 10_000, ttl=1000)
    third = await _finish(store, clock, 10_000, ttl=1000)
    assert store.bytes_held == 3 * (JOB_OVERHEAD + 10_000)
    with pytest.raises(StoreFull, match="bytes"):
        await store.create(make_job(clock))
    # Nothing stored was lost to the refusal.
    for job_id in (short, kept, third):
        stored = await store.get(job_id)
        assert stored is not None and stored.result == {"text": "x" * 10_000}
    clock.advance(11)  # the first result expires: its bytes are free again
    await _finish(store, clock, 10_000, ttl=1000)
    with pytest.raises(StoreFull):
        await store.create(make_job(clock))
    assert await store.delete(third)
    await store.create(make_job(clock))


async def test_a_job_that_ends_is_stored_even_past_the_budget() -> None:
    """Refusing a finished result would lose work already done: the budget is enforced at
    submit, and an ending job may overshoot it."""
    clock = FakeClock()
    store = _store(clock, max_bytes=JOB_OVERHEAD * 2)
    job_id = await _finish(store, clock, 1_000_000)
    stored = await store.get(job_id)
    assert stored is not None and stored.status is JobStatus.COMPLETED
    assert store.bytes_held == JOB_OVERHEAD + 1_000_000
    with pytest.raises(StoreFull):
        await store.create(make_job(clock))


async def test_max_bytes_options() -> None:
    clock = FakeClock()
    assert _store(clock).max_bytes == 1024**3
    assert _store(clock, max_bytes="2KiB").max_bytes == 2048
    unbounded = _store(clock, max_bytes="0")
    assert unbounded.max_bytes == 0
    await _finish(unbounded, clock, 5_000_000)
    await unbounded.create(make_job(clock))  # 0: no byte bound
    with pytest.raises(ValueError, match="not a size"):
        _store(clock, max_bytes="lots")
    with pytest.raises(ValueError, match="unknown memory store option"):
        _store(clock, max_byte=10)


async def test_the_byte_budget_end_to_end(serve: Any) -> None:
    """Through a real server: once stored results fill max_bytes, a submit gets 503 in the
    contract's shape with Retry-After, every stored job stays readable, and deleting one makes
    room again."""
    stack = await build_stack(serve, store_options={"max_bytes": "40KiB"})
    body = {"model": "m", "input": "y" * 12_000}  # the test app echoes it: a ~12 KB result
    accepted: list[str] = []
    refused: httpx.Response | None = None
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(10):
            response = await stack.submit(client, "embeddings", json=body)
            if response.status_code != 202:
                refused = response
                break
            finished = await stack.finish(client, "embeddings", response)
            assert finished.json()["status"] == "completed"
            accepted.append(response.json()["id"])
        assert refused is not None, "the byte budget never refused a submit"
        assert refused.status_code == 503 and refused.headers["retry-after"]
        assert "bytes" in refused.json()["error"]["message"]
        assert 2 <= len(accepted) <= 3
        for job_id in accepted:
            poll = await client.get(f"{stack.url}/v1/async/embeddings/{job_id}")
            assert poll.status_code == 200 and poll.json()["result"]["echo"] == body
        deleted = await client.delete(f"{stack.url}/v1/async/embeddings/{accepted[0]}")
        assert deleted.status_code in (200, 204)
        again = await stack.submit(client, "embeddings", json=body)
        assert again.status_code == 202, again.text
