"""Two store instances on one file stand for two processes: one's terminal update or delete
wakes the other's ``wait()``, the bound and the owner share hold across both, and racing writes
from both keep their atomicity. The last tests put the second instance in another process."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from bifrost_async.jobs import JobStatus, new_job_id
from bifrost_async.store import OwnerShareFull, StoreContext, StoreFull
from bifrost_async.testing import FakeClock, finished, make_job, processing

from bifrost_async_sqlite import SqliteJobStore, sqlite_store

PEER = Path(__file__).with_name("sqlite_peer.py")


def build(path: Path, clock: FakeClock, max_jobs: int = 50, max_owner_jobs: int = 0) -> SqliteJobStore:
    options = {"path": str(path), "sweep_interval": 0, "purge_interval": 0, "notify_interval": 0.02}
    context = StoreContext(clock=clock, max_jobs=max_jobs, options=options, max_owner_jobs=max_owner_jobs)
    return sqlite_store(context)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def pair(db_path: Path, clock: FakeClock) -> AsyncIterator[tuple[SqliteJobStore, SqliteJobStore]]:
    a, b = build(db_path, clock, max_jobs=3), build(db_path, clock, max_jobs=3)
    await a.start()
    await b.start()
    await asyncio.wait_for(b.tailing.wait(), 10)
    yield a, b
    await a.close()
    await b.close()


async def test_terminal_update_on_one_wakes_wait_on_the_other(
    pair: tuple[SqliteJobStore, SqliteJobStore], clock: FakeClock
) -> None:
    a, b = pair
    job = make_job(clock)
    await a.create(job)
    waiter = asyncio.create_task(b.wait(job.id, 60))
    running = processing(job, clock)
    assert await a.update(running, expect=(JobStatus.PENDING,))
    done = finished(running, clock, result={"text": "x"})
    assert await a.update(done, expect=(JobStatus.PROCESSING,))
    # far below the wait's own 60 s: only the event log can end it in time
    assert await asyncio.wait_for(waiter, 10) == done


async def test_delete_on_one_wakes_wait_on_the_other(
    pair: tuple[SqliteJobStore, SqliteJobStore], clock: FakeClock
) -> None:
    """How a runner learns that the job it runs was cancelled in another process."""
    a, b = pair
    job = make_job(clock)
    await b.create(job)
    waiter = asyncio.create_task(b.wait(job.id, 60))
    assert await a.delete(job.id)
    assert await asyncio.wait_for(waiter, 10) is None
    assert await b.get(job.id) is None


async def test_the_bound_is_shared(pair: tuple[SqliteJobStore, SqliteJobStore], clock: FakeClock) -> None:
    a, b = pair
    await a.create(make_job(clock))
    await b.create(make_job(clock))
    racing = [make_job(clock) for _ in range(4)]
    answers = await asyncio.gather(
        *(store.create(job) for store, job in zip((a, b, a, b), racing, strict=True)), return_exceptions=True
    )
    assert sum(answer is None for answer in answers) == 1
    assert all(answer is None or isinstance(answer, StoreFull) for answer in answers)


async def test_owner_share_is_shared_under_racing_creates(db_path: Path, clock: FakeClock) -> None:
    a, b = build(db_path, clock, max_owner_jobs=3), build(db_path, clock, max_owner_jobs=3)
    await a.start()
    await b.start()
    try:
        racing = [make_job(clock, owner="flood") for _ in range(8)]
        stores = [a, b] * 4
        answers = await asyncio.gather(
            *(store.create(job) for store, job in zip(stores, racing, strict=True)), return_exceptions=True
        )
        assert sum(answer is None for answer in answers) == 3
        assert all(answer is None or isinstance(answer, OwnerShareFull) for answer in answers)
        assert await a.owner_jobs("flood") == await b.owner_jobs("flood") == 3
    finally:
        await a.close()
        await b.close()


async def test_racing_claims_and_updates_from_both(
    pair: tuple[SqliteJobStore, SqliteJobStore], clock: FakeClock
) -> None:
    a, b = pair
    ids = [new_job_id() for _ in range(8)]
    answers = await asyncio.gather(
        *(store.claim_idempotency_key("race", "fp", i, 30) for store, i in zip([a, b] * 4, ids, strict=True))
    )
    winners = [i for i, answer in zip(ids, answers, strict=True) if answer == (None, True)]
    assert len(winners) == 1
    assert await a.find_idempotency_key("race") == await b.find_idempotency_key("race") == (winners[0], "fp")

    job = make_job(clock)
    await a.create(job)
    running = processing(job, clock)
    assert await b.update(running, expect=(JobStatus.PENDING,))
    contenders = [finished(running, clock, result={"n": n}) for n in range(8)]
    wins = await asyncio.gather(
        *(
            store.update(c, expect=(JobStatus.PROCESSING,))
            for store, c in zip([a, b] * 4, contenders, strict=True)
        )
    )
    assert sum(wins) == 1
    assert await a.get(job.id) == await b.get(job.id) == contenders[wins.index(True)]


async def peer(db_path: Path, action: str, job_id: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(PEER), str(db_path), action, job_id, stdout=asyncio.subprocess.PIPE
    )


async def test_wait_here_is_woken_by_another_process(db_path: Path, clock: FakeClock) -> None:
    store = build(db_path, clock)
    await store.start()
    try:
        job = make_job(clock, ttl=3600)
        await store.create(job)
        waiter = asyncio.create_task(store.wait(job.id, 60))
        process = await peer(db_path, "finish", job.id)
        out, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0 and out.strip() == b"done"
        done = await asyncio.wait_for(waiter, 10)
        assert done is not None and done.status is JobStatus.COMPLETED and done.result == {"by": "peer"}
    finally:
        await store.close()


async def test_wait_in_another_process_is_woken_by_a_delete_here(db_path: Path, clock: FakeClock) -> None:
    store = build(db_path, clock)
    await store.start()
    try:
        job = make_job(clock, ttl=3600)
        await store.create(job)
        process = await peer(db_path, "wait", job.id)
        assert process.stdout is not None
        assert await asyncio.wait_for(process.stdout.readline(), 30) == b"waiting\n"
        assert await store.delete(job.id)
        # the peer waits up to 60 s: an answer within 20 s can only come from the wake-up
        assert await asyncio.wait_for(process.stdout.readline(), 20) == b"gone\n"
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        await store.close()
