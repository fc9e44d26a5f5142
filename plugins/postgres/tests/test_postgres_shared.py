"""Two store instances on one schema stand for two processes, beyond the kit's
``SharedStoreContract``: larger races (compare-and-sets, the bound, the share, claims) from both,
a killed LISTEN connection (a notification missed meanwhile is not lost), and a PostgreSQL
restart (503 while it is down; waiters are neither failed nor stuck across it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from bifrost_async.jobs import JobStatus, new_job_id
from bifrost_async.store import OwnerShareFull, StoreContext, StoreFull, StoreUnavailable
from bifrost_async.testing import FakeClock, finished, make_job, processing

from bifrost_async_postgres import PostgresJobStore, postgres_store
from bifrost_async_postgres.server import PostgresServer

#: Generous bound on anything that should happen promptly: only a lost wake-up reaches it.
PROMPT = 20.0

Pair = tuple[PostgresJobStore, PostgresJobStore]


def build(url: str, schema: str, clock: FakeClock, **context: Any) -> PostgresJobStore:
    options = {"url": url, "schema": schema, "sweep_interval": 0, "purge_interval": 0}
    return postgres_store(StoreContext(clock=clock, options=options, **{"max_jobs": 100, **context}))


@pytest.fixture
async def pair_of(postgres_url: str, schema: str) -> AsyncIterator[Callable[..., Any]]:
    """Build two started instances on one schema and clock (context overrides allowed)."""
    built: list[PostgresJobStore] = []

    async def make(**context: Any) -> Pair:
        clock = FakeClock()
        stores = (
            build(postgres_url, schema, clock, **context),
            build(postgres_url, schema, clock, **context),
        )
        for store in stores:
            await store.start()
            built.append(store)
            await asyncio.wait_for(store.listening.wait(), PROMPT)
        return stores

    yield make
    for store in built:
        await store.close()


async def parked(store: PostgresJobStore, job_id: str) -> asyncio.Task[Any]:
    """A wait() on ``store`` that has registered its waiter and finished its first read, so it
    can only return when woken (or at its 120 s timeout)."""
    read = PostgresJobStore.get.__get__(store)
    reads = asyncio.Event()

    async def counted(wanted: str) -> Any:
        job = await read(wanted)
        reads.set()
        return job

    store.get = counted  # type: ignore[method-assign]
    try:
        task = asyncio.create_task(store.wait(job_id, 120))
        await asyncio.wait_for(reads.wait(), PROMPT)
    finally:
        del store.get  # back to the class's method for later reads
    return task


async def test_terminal_update_on_one_wakes_a_wait_on_the_other(pair_of: Callable[..., Any]) -> None:
    a, b = await pair_of()
    clock: FakeClock = a.clock  # type: ignore[assignment]
    job = make_job(clock)
    await a.create(job)
    running = processing(job, clock)
    assert await a.update(running, expect=(JobStatus.PENDING,))
    waiter = await parked(b, job.id)
    running.lease_expires_at = clock() + 99  # a renewal sends no notification
    assert await a.update(running, expect=(JobStatus.PROCESSING,))
    done = finished(running, clock, result={"text": "x"})
    assert await a.update(done, expect=(JobStatus.PROCESSING,))
    # far below the wait's own 120 s: only a NOTIFY from A's transaction can end it in time
    assert await asyncio.wait_for(waiter, PROMPT) == done


async def test_delete_on_one_wakes_a_wait_on_the_other(pair_of: Callable[..., Any]) -> None:
    a, b = await pair_of()
    job = make_job(a.clock)  # type: ignore[arg-type]
    await b.create(job)
    waiter = await parked(b, job.id)
    assert await a.delete(job.id)
    assert await asyncio.wait_for(waiter, PROMPT) is None
    assert await b.get(job.id) is None


async def test_racing_updates_from_both_only_one_wins(pair_of: Callable[..., Any]) -> None:
    a, b = await pair_of()
    clock: FakeClock = a.clock  # type: ignore[assignment]
    job = make_job(clock)
    await a.create(job)
    running = processing(job, clock)
    assert await b.update(running, expect=(JobStatus.PENDING,))
    contenders = [finished(running, clock, result={"n": n}) for n in range(12)]
    wins = await asyncio.gather(
        *((a if n % 2 else b).update(c, expect=(JobStatus.PROCESSING,)) for n, c in enumerate(contenders))
    )
    assert sum(wins) == 1
    assert await a.get(job.id) == contenders[wins.index(True)]


async def test_the_bound_holds_across_instances(pair_of: Callable[..., Any]) -> None:
    a, b = await pair_of(max_jobs=5)
    clock: FakeClock = a.clock  # type: ignore[assignment]
    jobs = [make_job(clock, owner=f"o{n}") for n in range(12)]
    answers = await asyncio.gather(
        *((a if n % 2 else b).create(job) for n, job in enumerate(jobs)), return_exceptions=True
    )
    assert sum(answer is None for answer in answers) == 5
    assert all(answer is None or isinstance(answer, StoreFull) for answer in answers)
    held = [job for job, answer in zip(jobs, answers, strict=True) if answer is None]
    assert await b.delete(held[0].id)  # a place freed on one is free on the other
    await a.create(make_job(clock))
    with pytest.raises(StoreFull):
        await b.create(make_job(clock))


async def test_the_owner_share_holds_across_instances(pair_of: Callable[..., Any]) -> None:
    a, b = await pair_of(max_owner_jobs=3)
    clock: FakeClock = a.clock  # type: ignore[assignment]
    racing = [make_job(clock, owner="flood") for _ in range(10)]
    answers = await asyncio.gather(
        *((a if n % 2 else b).create(job) for n, job in enumerate(racing)), return_exceptions=True
    )
    assert sum(answer is None for answer in answers) == 3
    assert all(answer is None or isinstance(answer, OwnerShareFull) for answer in answers)
    assert await a.owner_jobs("flood") == await b.owner_jobs("flood") == 3
    await b.create(make_job(clock, owner="someone-else"))  # other owners go on


async def test_racing_claims_from_both_only_one_wins(pair_of: Callable[..., Any]) -> None:
    a, b = await pair_of()
    for round_ in range(5):
        ids = [new_job_id() for _ in range(10)]
        claim = f"race-{round_}"
        answers = await asyncio.gather(
            *((a if n % 2 else b).claim_idempotency_key(claim, "fp", i, 30) for n, i in enumerate(ids))
        )
        winners = [i for i, answer in zip(ids, answers, strict=True) if answer == (None, True)]
        assert len(winners) == 1
        assert all(answer in ((None, True), (winners[0], True)) for answer in answers)
        assert (
            await a.find_idempotency_key(claim) == await b.find_idempotency_key(claim) == (winners[0], "fp")
        )


async def test_a_lost_listener_reconnects_and_rereads(pair_of: Callable[..., Any], postgres_url: str) -> None:
    """A notification sent while B's LISTEN connection is gone is not lost for B's waiter: B
    reconnects and wakes every waiter to re-read."""
    a, b = await pair_of()
    clock: FakeClock = a.clock  # type: ignore[assignment]
    job = make_job(clock)
    await a.create(job)
    running = processing(job, clock)
    await a.update(running, expect=(JobStatus.PENDING,))
    waiter = await parked(b, job.id)
    admin = await asyncpg.connect(postgres_url)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'"
            " AND pid <> pg_backend_pid() AND query LIKE $1",
            f"%{b.options.channel}%",
        )
    finally:
        await admin.close()
    assert killed >= 1
    done = finished(running, clock, result=1)
    assert await a.update(done, expect=(JobStatus.PROCESSING,))  # maybe while B is not listening
    assert await asyncio.wait_for(waiter, PROMPT) == done
    await asyncio.wait_for(b.listening.wait(), PROMPT)


async def test_a_postgres_restart_is_503_while_down_then_works(own_postgres: PostgresServer) -> None:
    own_postgres.start()
    clock = FakeClock()
    a, b = build(own_postgres.url, "restart", clock), build(own_postgres.url, "restart", clock)
    for store in (a, b):
        await store.start()
        await asyncio.wait_for(store.listening.wait(), PROMPT)
    try:
        job = make_job(clock)
        await a.create(job)
        running = processing(job, clock)
        await a.update(running, expect=(JobStatus.PENDING,))
        waiter = await parked(b, job.id)
        own_postgres.stop()
        with pytest.raises(StoreUnavailable):
            await a.get(job.id)
        with pytest.raises(StoreUnavailable):
            await b.create(make_job(clock))
        assert not waiter.done()  # a waiter is not failed by the outage; it waits on
        own_postgres.start()
        assert await a.get(job.id) == running  # the data survived; the pool reconnected
        await asyncio.wait_for(b.listening.wait(), PROMPT)
        done = finished(running, clock, result={"after": "restart"})
        assert await a.update(done, expect=(JobStatus.PROCESSING,))
        assert await asyncio.wait_for(waiter, PROMPT) == done  # not stuck
    finally:
        for store in (a, b):
            await store.close()
