"""``run_watched``: the runner's cancellation watch, without HTTP."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from bifrost_async.builtin.memory import MemoryStore
from bifrost_async.core.watch import JobEndedElsewhere, run_watched
from bifrost_async.jobs import JobStatus
from bifrost_async.testing import FakeClock, make_job, until


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__(FakeClock(), 100)
        self.waits = 0

    async def wait(self, job_id: str, timeout: float) -> object:
        self.waits += 1
        return await super().wait(job_id, timeout)


async def processing_job(store: CountingStore) -> str:
    job = make_job(FakeClock())
    await store.create(job)
    processing = dataclasses.replace(job, status=JobStatus.PROCESSING)
    assert await store.update(processing, expect=(JobStatus.PENDING,))
    return job.id


async def test_a_run_that_ends_in_its_first_step_starts_no_watch() -> None:
    store = CountingStore()
    job_id = await processing_job(store)

    async def quick() -> object:
        return "done"

    assert await run_watched(asyncio.create_task(quick()), store, job_id, 10) == "done"
    assert store.waits == 0


async def test_a_job_ended_elsewhere_cancels_the_run() -> None:
    store = CountingStore()
    job_id = await processing_job(store)
    cancelled = asyncio.Event()

    async def slow() -> object:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    task: asyncio.Task[object] = asyncio.create_task(slow())
    run = asyncio.create_task(run_watched(task, store, job_id, 10))
    await until(lambda: store.waits == 1)  # the run is still going, so the watch has started
    assert await store.delete(job_id)
    with pytest.raises(JobEndedElsewhere):
        await asyncio.wait_for(run, 5)
    assert cancelled.is_set() and task.cancelled()


async def test_a_job_already_ended_when_the_watch_starts_cancels_the_run() -> None:
    store = CountingStore()
    job_id = await processing_job(store)

    async def slow() -> object:
        await asyncio.sleep(0)  # yields once: the job is deleted in this step
        await asyncio.sleep(30)
        return "never"

    task: asyncio.Task[object] = asyncio.create_task(slow())
    await store.delete(job_id)
    with pytest.raises(JobEndedElsewhere):
        await asyncio.wait_for(run_watched(task, store, job_id, 10), 5)
    assert task.cancelled()


async def test_cancelling_the_watcher_cancels_the_run_without_waiting_for_it() -> None:
    store = CountingStore()
    job_id = await processing_job(store)
    release = asyncio.Event()
    started = asyncio.Event()

    async def stubborn() -> object:
        started.set()
        while not release.is_set():
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                await release.wait()
        return "late"

    task: asyncio.Task[object] = asyncio.create_task(stubborn())
    run = asyncio.create_task(run_watched(task, store, job_id, 10))
    await started.wait()
    await until(lambda: store.waits == 1)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, 1)  # the stubborn run does not hold the watcher
    assert not task.done()
    release.set()
    assert await task == "late"
