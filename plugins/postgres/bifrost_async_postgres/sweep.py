"""The sweep and the purge, each a background task of every process sharing the schema.

The sweep fails jobs whose worker died even when nobody polls them (the core fails such a job on
its next poll; without one it would stay ``processing`` for good and hold a place in the bound).
It reads unfinished jobs whose lease ran out (index ``jobs_leases``), skips those this process
runs (``StoreHost.holds``) and ends the rest with ``StoreHost.fail_orphan``, whose compare-and-set
lets exactly one of several sweeping processes end each job.

The purge deletes expired rows (index ``jobs_expiry``) with their claims and fixes the counters;
reads treat an expired row as absent already, so the purge only bounds the table's size.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from bifrost_async.jobs import Job
from bifrost_async.store import StoreError

from .store import Connection, PostgresJobStore

log = structlog.get_logger(__name__)

#: Orphans failed per sweep, so one sweep never holds the event loop for long.
BATCH = 100


async def orphans(store: PostgresJobStore, now: float, limit: int) -> list[Job]:
    """Unfinished jobs whose lease ran out by ``now``, oldest lease first (``jobs_leases``)."""
    sql = (
        f"SELECT record FROM {store.options.quoted_schema}.jobs WHERE status IN ('pending', 'processing')"
        " AND lease_expires_at IS NOT NULL AND lease_expires_at < $1 ORDER BY lease_expires_at LIMIT $2"
    )
    rows = await store.call(lambda conn: conn.fetch(sql, float(now), limit))
    return [Job.from_record_json(row["record"]) for row in rows]


async def purge(store: PostgresJobStore) -> int:
    """Delete expired jobs, ``purge_batch`` per transaction, until none is left, and aged webhook
    delivery records; how many jobs."""
    await store.webhook_purge_history()
    sql = f"SELECT {store.options.quoted_schema}.purge($1, $2)"
    batch = store.options.purge_batch
    total = 0
    while True:
        now = float(store.clock())

        async def once(conn: Connection, now: float = now) -> int:
            return int(await conn.fetchval(sql, now, batch))

        removed = await store.call(once)
        total += removed
        if removed < batch:
            return total


async def sweep_once(store: PostgresJobStore) -> list[str]:
    """Fail every job whose lease ran out by the store's clock; the ids this call failed.

    Raises :class:`~bifrost_async.store.StoreUnavailable` when PostgreSQL is down."""
    failed: list[str] = []
    for job in await orphans(store, store.clock(), BATCH):
        if store.host.holds(job.id):
            continue  # running here: a missed lease renewal does not make it an orphan
        if await store.host.fail_orphan(job):
            failed.append(job.id)
    return failed


async def sweep_forever(store: PostgresJobStore) -> None:
    """Sweep every ``sweep_interval`` seconds until cancelled; an outage only skips a round."""
    await _forever(store.options.sweep_interval, lambda: sweep_once(store), "sweep")


async def purge_forever(store: PostgresJobStore) -> None:
    """Purge every ``purge_interval`` seconds until cancelled; an outage only skips a round."""
    await _forever(store.options.purge_interval, lambda: purge(store), "purge")


async def _forever(interval: float, once: Callable[[], Awaitable[object]], what: str) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await once()
        except StoreError:
            pass  # already logged by the store; the next round tries again
        except Exception:
            log.exception(f"postgres_store.{what}_failed")
