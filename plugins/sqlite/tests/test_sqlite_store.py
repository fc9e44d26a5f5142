"""The SQLite store beyond the contract: registration, options, expiry purge, the orphan sweep,
and a locked or corrupt file answering as unavailable (503), never as a crash."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from bifrost_async import AsyncJobsMiddleware
from bifrost_async.core.hooks import make_plugin_manager, store_registry
from bifrost_async.jobs import JobStatus
from bifrost_async.store import StoreContext, StoreHost, StoreUnavailable
from bifrost_async.testing import FakeClock, finished, make_job, processing

from bifrost_async_sqlite import SqliteJobStore, events, sqlite_store
from bifrost_async_sqlite.maintenance import purge_once, sweep_once


def build(path: Path, clock: FakeClock | None = None, **options: Any) -> SqliteJobStore:
    opts = {"path": str(path), "sweep_interval": 0, "purge_interval": 0, **options}
    return sqlite_store(StoreContext(clock=clock or FakeClock(), max_jobs=100, options=opts))


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteJobStore]:
    built = build(db_path)
    await built.start()
    yield built
    await built.close()


def test_registered_shared_through_the_entry_point() -> None:
    registry = store_registry(make_plugin_manager())
    assert registry.get("sqlite") is sqlite_store
    assert registry.is_shared("sqlite")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"colour": "blue"}, "unknown sqlite store option(s): colour"),
        ({"busy_timeout": "soon"}, "sqlite store option busy_timeout must be a number"),
        ({"notify_interval": "0"}, "sqlite store option notify_interval must be positive"),
        ({"sweep_interval": "-1"}, "sqlite store option sweep_interval must not be negative"),
        ({"synchronous": "sometimes"}, "sqlite store option synchronous must be one of"),
        ({"path": ":memory:"}, "sqlite store option path must name a file"),
        ({"path": "/no/such/dir/jobs.db"}, "directory '/no/such/dir' does not exist"),
    ],
)
def test_bad_options_are_refused_in_one_line(options: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=r"^[^\n]*$") as refused:
        sqlite_store(StoreContext(clock=FakeClock(), max_jobs=10, options=options))
    assert message in str(refused.value)


def test_a_directory_as_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a file"):
        build(tmp_path)


def test_middleware_refuses_a_missing_directory_when_built(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"store_options.*does not exist"):
        AsyncJobsMiddleware(None, store="sqlite", store_options={"path": str(tmp_path / "gone" / "j.db")})


def test_factory_creates_nothing(db_path: Path) -> None:
    build(db_path)
    assert not db_path.exists()  # the factory only checks; start() opens


async def test_file_is_wal_and_record_is_the_job(store: SqliteJobStore, db_path: Path) -> None:
    job = make_job(store.clock)  # type: ignore[arg-type]
    await store.create(job)
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        owner, status, expires = raw.execute("SELECT owner, status, expires_at FROM jobs").fetchone()
    assert (owner, status, expires) == (job.owner, "pending", None)
    for made in (db_path, db_path.with_name("jobs.db-wal")):  # results are private to the service
        assert made.stat().st_mode & 0o777 == 0o600, made


async def test_purge_deletes_expired_jobs_their_claims_and_old_events(db_path: Path) -> None:
    clock = FakeClock()
    store = build(db_path, clock)
    await store.start()
    try:
        expiring = make_job(clock, ttl=5, idempotency_claim="c1")
        kept = make_job(clock, ttl=5)
        assert await store.claim_idempotency_key("c1", "fp", expiring.id, 30) == (None, True)
        await store.claim_idempotency_key("lapsing", "fp", "never-created", 30)
        for job in (expiring, kept):
            await store.create(job)
        running = processing(expiring, clock)
        await store.update(running, expect=(JobStatus.PENDING,))
        await store.update(finished(running, clock, result=1), expect=(JobStatus.PROCESSING,))
        clock.advance(31)
        assert await purge_once(store) == 2  # the job and the lapsed claim (its own claim: by trigger)
        with sqlite3.connect(db_path) as raw:
            assert raw.execute("SELECT id FROM jobs").fetchall() == [(kept.id,)]
            assert raw.execute("SELECT count(*) FROM claims").fetchone()[0] == 0
            assert raw.execute("SELECT n FROM counts").fetchone()[0] == 1
        assert await store.get(kept.id) == kept
    finally:
        await store.close()


async def test_sweep_fails_orphans_but_not_jobs_held_here(db_path: Path) -> None:
    clock = FakeClock()
    store = build(db_path, clock)
    await store.start()
    try:
        orphan, held, renewed = (processing(make_job(clock), clock) for _ in range(3))
        for job in (orphan, held, renewed):
            await store.create(job)
        clock.advance(31)  # processing() leases for 30 s
        renewed.lease_expires_at = clock() + 30
        assert await store.update(renewed, expect=(JobStatus.PROCESSING,))
        store.attach(StoreHost(holds=lambda job_id: job_id == held.id, fail_orphan=store.host.fail_orphan))
        assert await sweep_once(store) == [orphan.id]
        lost = await store.get(orphan.id)
        assert lost is not None and lost.status is JobStatus.FAILED and lost.status_code == 500
        assert lost.error is not None and lost.error["error"]["code"] == "worker_lost"
        for job in (held, renewed):
            assert (await store.get(job.id)) == job
        assert await sweep_once(store) == []  # ended once: nothing left to sweep
    finally:
        await store.close()


async def test_locked_database_is_unavailable_then_recovers(db_path: Path) -> None:
    store = build(db_path, busy_timeout="0.2")
    await store.start()
    try:
        job = make_job(store.clock)  # type: ignore[arg-type]
        holder = sqlite3.connect(db_path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock too long
        try:
            with pytest.raises(StoreUnavailable, match="locked"):
                await store.create(job)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        await store.create(job)
        assert await store.get(job.id) == job
    finally:
        await store.close()


async def test_corrupt_file_is_unavailable_not_a_crash(db_path: Path) -> None:
    db_path.write_bytes(b"this is not a database, just some bytes" * 200)
    store = build(db_path)
    await store.start()  # logged, not fatal: requests answer 503 until the file is readable
    try:
        job = make_job(store.clock)  # type: ignore[arg-type]
        with pytest.raises(StoreUnavailable, match="not a database"):
            await store.create(job)
        with pytest.raises(StoreUnavailable):
            await store.get(job.id)
    finally:
        await store.close()


async def test_purge_trims_the_wake_up_log_but_ids_never_go_back(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "KEEP", 3)
    store = build(db_path)
    await store.start()
    try:
        jobs = [make_job(store.clock) for _ in range(5)]  # type: ignore[arg-type]
        for job in jobs:
            await store.create(job)
            assert await store.delete(job.id)  # one event each
        await purge_once(store)
        with sqlite3.connect(db_path) as raw:
            assert [row[0] for row in raw.execute("SELECT id FROM events ORDER BY id")] == [3, 4, 5]
            assert events.last_event(raw) == 5
            _, rows = events.read_events(raw, 1, None)
        # a tail that had seen only event 1 finds 3 next: the gap makes it wake everyone
        assert rows == [(n, jobs[n - 1].id) for n in (3, 4, 5)]
    finally:
        await store.close()


async def test_reads_by_id_use_the_quick_connection_once_the_file_is_open(store: SqliteJobStore) -> None:
    """Gets skip the thread hop (``db.QuickReader``) once the threaded reader opened the file;
    the answers are the same either way."""
    job = make_job(store.clock)  # type: ignore[arg-type]
    await store.create(job)
    await asyncio.wait_for(store.tailing.wait(), 10)  # the tail opened the threaded reader
    assert await store.get(job.id) == job
    assert store.quick.opened
    store.quick.close()
    assert not store.quick.opened
    assert await store.get(job.id) == job  # reopened on the next read
    assert store.quick.opened


async def test_a_quick_read_that_fails_is_answered_by_the_thread(
    store: SqliteJobStore, tmp_path: Path
) -> None:
    """Any failure on the quick connection (here: it was left pointing at another, empty file,
    as after the database file was replaced) is retried on the reader's thread, which answers,
    and the quick connection is reopened afresh on the next read."""
    job = make_job(store.clock)  # type: ignore[arg-type]
    await store.create(job)
    await asyncio.wait_for(store.tailing.wait(), 10)
    store.quick.close()
    store.quick._conn = sqlite3.connect(tmp_path / "elsewhere.db", isolation_level=None)  # no tables
    assert await store.get(job.id) == job
    assert not store.quick.opened  # dropped after its failure
    assert await store.get(job.id) == job
    assert store.quick.opened
