"""The Postgres store keeps the store contract, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from importlib.metadata import entry_points
from typing import Any

import asyncpg
import pytest
import structlog.testing
from bifrost_async.jobs import JobStatus
from bifrost_async.store import WORKER_LOST_MESSAGE, StoreContext, StoreFactory, StoreUnavailable
from bifrost_async.testing import (
    FakeClock,
    SharedStoreContract,
    WebhookRecordsContract,
    finished,
    make_job,
    processing,
)

from bifrost_async_postgres import PostgresJobStore, PostgresStoreOptions, postgres_store
from bifrost_async_postgres.server import PostgresServer
from bifrost_async_postgres.sweep import purge, sweep_once


def options(url: str, schema: str, **more: Any) -> dict[str, Any]:
    """Store options for tests: background sweep and purge off (tests call them)."""
    return {"url": url, "schema": schema, "sweep_interval": 0, "purge_interval": 0, **more}


class TestPostgresStore(SharedStoreContract):
    """The shared store contract, two instances on one schema of a real PostgreSQL standing for
    two processes; the bound holds across processes, so the store is bounded."""

    bounded = True

    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        return postgres_store

    @pytest.fixture
    def store_options(self, postgres_url: str, schema: str) -> Mapping[str, Any]:
        return options(postgres_url, schema)


@pytest.fixture
async def store(postgres_url: str, schema: str) -> AsyncIterator[PostgresJobStore]:
    built = postgres_store(
        StoreContext(clock=FakeClock(), max_jobs=100, options=options(postgres_url, schema))
    )
    await built.start()
    yield built
    await built.close()


def test_registered_through_the_entry_point_as_shared() -> None:
    plugin = {ep.name: ep for ep in entry_points(group="bifrost_async")}["postgres"].load()
    registered: dict[str, tuple[StoreFactory, bool]] = {}

    def register(name: str, factory: StoreFactory, *, shared: bool = False) -> None:
        registered[name] = (factory, shared)

    plugin.register_stores(register)
    assert registered == {"postgres": (postgres_store, True)}  # shared: serve --workers N accepts it


async def test_record_is_the_jobs_json_without_credentials(
    store: PostgresJobStore, postgres_url: str, schema: str
) -> None:
    job = make_job(store.clock)  # type: ignore[arg-type]
    await store.create(job)
    conn = await asyncpg.connect(postgres_url)
    try:
        row = await conn.fetchrow(f'SELECT owner, status, record FROM "{schema}".jobs WHERE id = $1', job.id)
    finally:
        await conn.close()
    assert row is not None and row["status"] == "pending" and row["owner"] == "digest-of-someone"
    assert row["record"] == job.to_record_json()


async def test_schema_separates_deployments(postgres_url: str, schema: str) -> None:
    clock = FakeClock()
    stores = [
        postgres_store(StoreContext(clock=clock, max_jobs=10, options=options(postgres_url, schema + s)))
        for s in ("_a", "_b")
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


async def test_sweep_fails_orphans_nobody_polls(store: PostgresJobStore) -> None:
    clock: FakeClock = store.clock  # type: ignore[assignment]
    alive, orphan, mine = make_job(clock), make_job(clock), make_job(clock)
    for job in (alive, orphan, mine):
        await store.create(job)
        assert await store.update(processing(job, clock), expect=(JobStatus.PENDING,))
    clock.advance(20)
    renewed = processing(alive, clock)  # its worker renewed the lease; the orphan's did not
    assert await store.update(renewed, expect=(JobStatus.PROCESSING,))
    clock.advance(15)
    store.host = type(store.host)(holds=lambda job_id: job_id == mine.id, fail_orphan=store.host.fail_orphan)
    assert await sweep_once(store) == [orphan.id]
    failed = await store.get(orphan.id)
    assert failed is not None and failed.status is JobStatus.FAILED and failed.status_code == 500
    assert failed.error is not None and failed.error["error"]["message"] == WORKER_LOST_MESSAGE
    assert failed.error["error"]["code"] == "worker_lost"
    assert await store.get(alive.id) == renewed
    got = await store.get(mine.id)  # this process runs it: never swept
    assert got is not None and got.status is JobStatus.PROCESSING
    assert await sweep_once(store) == []  # once failed, never again


async def test_purge_deletes_expired_rows_and_frees_counters(
    store: PostgresJobStore, postgres_url: str, schema: str
) -> None:
    clock: FakeClock = store.clock  # type: ignore[assignment]
    ended = [make_job(clock, ttl=5, idempotency_claim=f"c{n}") for n in range(3)]
    kept = make_job(clock)
    for job in [*ended, kept]:
        await store.claim_idempotency_key(job.idempotency_claim or "k", "fp", job.id, 30)
        await store.create(job)
    for job in ended:
        running = processing(job, clock)
        await store.update(running, expect=(JobStatus.PENDING,))
        await store.update(finished(running, clock, result=1), expect=(JobStatus.PROCESSING,))
    clock.advance(6)
    assert await store.owner_jobs("digest-of-someone") == 1  # expired rows already not counted
    assert await purge(store) == 3
    assert await purge(store) == 0
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await conn.fetchval(f'SELECT n FROM "{schema}".total') == 1
        assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".jobs') == 1
        assert await conn.fetchval(f'SELECT n FROM "{schema}".owners') == 1
        assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".claims') == 1  # kept's
    finally:
        await conn.close()
    assert await store.get(kept.id) == kept


async def test_migrate_false_refuses_an_unmigrated_schema(postgres_url: str, schema: str) -> None:
    refusing = postgres_store(
        StoreContext(clock=FakeClock(), max_jobs=10, options=options(postgres_url, schema, migrate="false"))
    )
    with pytest.raises(RuntimeError, match="migrate is false: run 'python -m bifrost_async_postgres migrate"):
        await refusing.start()
    await refusing.close()
    migrating = postgres_store(
        StoreContext(clock=FakeClock(), max_jobs=10, options=options(postgres_url, schema))
    )
    await migrating.start()
    await migrating.close()
    await refusing.start()  # migrated now: it starts
    await refusing.close()


async def test_an_unmigrated_schema_found_after_start_is_503(own_postgres: PostgresServer) -> None:
    """With ``migrate=false`` and the server down at start, the check happens on the first
    request that reaches the server: a 503 and an error log, never a 500."""
    late = postgres_store(
        StoreContext(
            clock=FakeClock(), max_jobs=10, options=options(own_postgres.url, "late", migrate="false")
        )
    )
    await late.start()  # the server is not running yet: not fatal
    try:
        own_postgres.start()
        with (
            structlog.testing.capture_logs() as logs,
            pytest.raises(StoreUnavailable, match="schema is not usable"),
        ):
            await late.get(make_job(FakeClock()).id)
        assert [entry["event"] for entry in logs if entry["log_level"] == "error"] == [
            "postgres_store.schema_unusable"
        ]
    finally:
        await late.close()


async def test_a_server_that_is_down_is_503_not_a_crash() -> None:
    from bifrost_async_postgres.server import free_port

    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    down = postgres_store(
        StoreContext(clock=FakeClock(), max_jobs=10, options=options(url, "x", connect_timeout=2))
    )
    await down.start()  # not fatal
    try:
        with pytest.raises(StoreUnavailable):
            await down.get(make_job(FakeClock()).id)
    finally:
        await down.close()


def test_options_from_strings_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIFROST_ASYNC_POSTGRES_URL", "postgresql://app:s3cret@db.internal:5433/jobs")
    parsed = PostgresStoreOptions.from_mapping({"pool_size": "7", "command_timeout": "1.5", "migrate": "no"})
    assert parsed.url == "postgresql://app:s3cret@db.internal:5433/jobs"
    assert (parsed.pool_size, parsed.command_timeout, parsed.migrate) == (7, 1.5, False)
    assert "s3cret" not in parsed.safe_url() and "app" not in parsed.safe_url()
    assert PostgresStoreOptions.from_mapping({"url": "postgresql://other/db"}).url == "postgresql://other/db"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"urll": "postgresql://x"}, "unknown postgres store option"),
        ({"url": "redis://x"}, "must be postgresql://"),
        ({"url": "postgresql://app:pw@db:port/x"}, "not a valid URL"),
        ({"url": "postgresql://db/x?sslmode=sometimes"}, "sslmode must be one of"),
        ({"pool_size": "many"}, "must be a number"),
        ({"pool_size": 0}, "must be positive"),
        ({"schema": "Robert'); DROP TABLE"}, "schema must be"),
        ({"migrate": "maybe"}, "must be true or false"),
    ],
)
def test_bad_options_fail_at_startup(given: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        PostgresStoreOptions.from_mapping(given)
    assert ":pw@" not in str(raised.value)  # a password in the URL is never repeated


class TestPostgresWebhookRecords(WebhookRecordsContract):
    """The webhook records capability's contract, on the real PostgreSQL."""

    @pytest.fixture
    async def records(self, postgres_url: str, schema: str) -> AsyncIterator[Any]:
        built = postgres_store(
            StoreContext(clock=FakeClock(), max_jobs=10, options=options(postgres_url, schema))
        )
        await built.start()
        yield built
        await built.close()


async def test_the_periodic_purge_runs_by_itself(postgres_url: str, schema: str) -> None:
    clock = FakeClock()
    purging = postgres_store(
        StoreContext(
            clock=clock, max_jobs=10, options={**options(postgres_url, schema), "purge_interval": 0.05}
        )
    )
    await purging.start()
    try:
        job = make_job(clock, ttl=5)
        await purging.create(job)
        running = processing(job, clock)
        await purging.update(running, expect=(JobStatus.PENDING,))
        await purging.update(finished(running, clock, result=1), expect=(JobStatus.PROCESSING,))
        clock.advance(6)
        conn = await asyncpg.connect(postgres_url)
        try:
            end = asyncio.get_running_loop().time() + 20
            while await conn.fetchval(f'SELECT count(*) FROM "{schema}".jobs') != 0:
                assert asyncio.get_running_loop().time() < end, (
                    "the purge task did not delete the expired row"
                )
                await asyncio.sleep(0.05)
            assert await conn.fetchval(f'SELECT n FROM "{schema}".total') == 0
        finally:
            await conn.close()
    finally:
        await purging.close()


def test_a_bad_store_option_stops_serve_in_one_line() -> None:
    """The real CLI refuses a bad Postgres store option before anything starts: one line, exit 2,
    and a password in the URL is not repeated."""
    command = [sys.executable, "-m", "bifrost_async", "serve", "--upstream", "http://127.0.0.1:9"]
    command += ["--store", "postgres", "--store-option", "url=postgresql://app:pw-SECRET@db:port/x"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "bifrost-async: error: --store-option: store 'postgres': "
        "postgres store url is not a valid URL (check the host and port)"
    ]
