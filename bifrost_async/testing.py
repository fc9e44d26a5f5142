"""Test helpers for bifrost-async and its plugins.

:class:`StoreContract` is the store contract as pytest tests. Every store runs it: subclass it in
a test module and provide a ``store_factory`` fixture (and, if the store needs them,
``store_options``)::

    from bifrost_async.testing import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store_factory(self):
            return my_store_factory

The tests are marked for pytest-asyncio, so they run in its strict and auto modes alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
import pytest_asyncio

from .jobs import Job, JobStatus, new_job_id
from .store import JobStore, StoreContext, StoreFactory, StoreFull


class FakeClock:
    """A clock for tests: starts at a real-looking epoch time and moves only when told."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_job(clock: FakeClock, **changes: Any) -> Job:
    """A pending transcription job with a fresh id; ``changes`` override fields."""
    fields: dict[str, Any] = {
        "id": new_job_id(),
        "request_id": new_job_id(),
        "request_type": "transcription",
        "status": JobStatus.PENDING,
        "created_at": clock(),
        "ttl": 60,
        "owner": "digest-of-someone",
        "extra_fields": {
            "provider": "openai",
            "model_requested": "whisper-1",
            "request_type": "transcription",
        },
    }
    fields.update(changes)
    return Job(**fields)


def finished(job: Job, clock: FakeClock, *, result: Any = None, error: dict[str, Any] | None = None) -> Job:
    """A copy of ``job``, completed (or failed when ``error`` is given) now, expiring after its ttl."""
    now = clock()
    return Job(
        **{
            **job.to_record(),
            "status": JobStatus.FAILED if error else JobStatus.COMPLETED,
            "status_code": 500 if error else 200,
            "result": None if error else result,
            "error": error,
            "completed_at": now,
            "expires_at": now + job.ttl,
            "lease_expires_at": None,
        }
    )


def processing(job: Job, clock: FakeClock) -> Job:
    now = clock()
    return Job(
        **{
            **job.to_record(),
            "status": JobStatus.PROCESSING,
            "started_at": now,
            "lease_expires_at": now + 30,
            "worker": "host:1",
        }
    )


class StoreContract:
    """The rules every :class:`~bifrost_async.store.JobStore` keeps, as tests."""

    #: Set to ``False`` in a subclass whose store has no bound on the number of jobs.
    bounded: bool = True
    #: The bound the contract's store is built with.
    max_jobs: int = 20

    @pytest.fixture
    def store_options(self) -> Mapping[str, Any]:
        return {}

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest_asyncio.fixture
    async def store(
        self, store_factory: StoreFactory, store_options: Mapping[str, Any], clock: FakeClock
    ) -> AsyncIterator[JobStore]:
        store = store_factory(StoreContext(clock=clock, max_jobs=self.max_jobs, options=store_options))
        await store.start()
        try:
            yield store
        finally:
            await store.close()

    @pytest.mark.asyncio
    async def test_create_then_get_round_trips_every_field(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock, created_at=clock() + 0.123456)
        await store.create(job)
        assert await store.get(job.id) == job
        done = finished(processing(job, clock), clock, result={"text": "héllo", "segments": [{"start": 0.5}]})
        assert await store.update(processing(job, clock), expect=(JobStatus.PENDING,))
        assert await store.update(done, expect=(JobStatus.PROCESSING,))
        assert await store.get(job.id) == done

    @pytest.mark.asyncio
    async def test_unknown_id_is_none(self, store: JobStore) -> None:
        assert await store.get(new_job_id()) is None

    @pytest.mark.asyncio
    async def test_returned_jobs_are_copies(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock)
        await store.create(job)
        job.status = JobStatus.FAILED
        got = await store.get(job.id)
        assert got is not None and got.status is JobStatus.PENDING
        got.status = JobStatus.COMPLETED
        again = await store.get(job.id)
        assert again is not None and again.status is JobStatus.PENDING

    @pytest.mark.asyncio
    async def test_update_requires_expected_status(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock)
        await store.create(job)
        done = finished(processing(job, clock), clock, result={"ok": True})
        assert not await store.update(done, expect=(JobStatus.PROCESSING,))
        assert (await store.get(job.id)) == job
        assert not await store.update(make_job(clock), expect=(JobStatus.PENDING,))  # unknown id

    @pytest.mark.asyncio
    async def test_status_never_moves_backwards(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock)
        await store.create(job)
        running = processing(job, clock)
        assert await store.update(running, expect=(JobStatus.PENDING,))
        assert not await store.update(job, expect=(JobStatus.PROCESSING,))  # back to pending
        done = finished(running, clock, result=[1, 2])
        assert await store.update(done, expect=(JobStatus.PROCESSING,))
        every = tuple(JobStatus)
        assert not await store.update(running, expect=every)
        assert not await store.update(finished(running, clock, error={"message": "x"}), expect=every)
        assert await store.get(job.id) == done

    @pytest.mark.asyncio
    async def test_lease_renewal_rewrites_same_status(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock)
        await store.create(job)
        running = processing(job, clock)
        assert await store.update(running, expect=(JobStatus.PENDING,))
        running.lease_expires_at = clock() + 99
        assert await store.update(running, expect=(JobStatus.PROCESSING,))
        got = await store.get(job.id)
        assert got is not None and got.lease_expires_at == running.lease_expires_at

    @pytest.mark.asyncio
    async def test_racing_updates_only_one_wins(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock)
        await store.create(job)
        running = processing(job, clock)
        assert await store.update(running, expect=(JobStatus.PENDING,))
        contenders = [finished(running, clock, result={"n": n}) for n in range(8)]
        contenders += [finished(running, clock, error={"message": f"e{n}"}) for n in range(8)]
        wins = await asyncio.gather(*(store.update(c, expect=(JobStatus.PROCESSING,)) for c in contenders))
        assert sum(wins) == 1
        assert await store.get(job.id) == contenders[wins.index(True)]

    @pytest.mark.asyncio
    async def test_finished_job_expires_at_its_time(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock, ttl=30)
        await store.create(job)
        running = processing(job, clock)
        await store.update(running, expect=(JobStatus.PENDING,))
        done = finished(running, clock, result={"text": "x"})
        assert await store.update(done, expect=(JobStatus.PROCESSING,))
        clock.advance(29.9)
        assert await store.get(job.id) == done
        clock.advance(0.2)
        assert await store.get(job.id) is None
        assert not await store.update(done, expect=tuple(JobStatus))

    @pytest.mark.asyncio
    async def test_unfinished_jobs_do_not_expire(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock, ttl=1)
        await store.create(job)
        clock.advance(3600)
        assert await store.get(job.id) == job

    @pytest.mark.asyncio
    async def test_many_concurrent_creates(self, store: JobStore, clock: FakeClock) -> None:
        jobs = [make_job(clock) for _ in range(min(self.max_jobs, 20))]
        await asyncio.gather(*(store.create(job) for job in jobs))
        got = await asyncio.gather(*(store.get(job.id) for job in jobs))
        assert got == jobs

    @pytest.mark.asyncio
    async def test_bound_refuses_instead_of_evicting(self, store: JobStore, clock: FakeClock) -> None:
        if not self.bounded:
            pytest.skip("this store declares no bound on stored jobs")
        jobs = [make_job(clock) for _ in range(self.max_jobs)]
        for job in jobs:
            await store.create(job)
        with pytest.raises(StoreFull):
            await store.create(make_job(clock))
        assert [await store.get(job.id) for job in jobs] == jobs
        # once a finished job expires, there is room again
        first = processing(jobs[0], clock)
        await store.update(first, expect=(JobStatus.PENDING,))
        await store.update(finished(first, clock, result=None), expect=(JobStatus.PROCESSING,))
        clock.advance(jobs[0].ttl + 1)
        await store.create(make_job(clock))
