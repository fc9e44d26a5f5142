"""Periodic work of every store instance: the orphan sweep and the purge.

**Sweep** (every ``sweep_interval`` s): a job whose worker died stays ``processing`` until a poll
sees its lease ran out; the sweep ends it without a poll. It reads unfinished jobs whose
``lease_expires_at`` is past (an index range), skips those this process runs
(``StoreHost.holds``) and hands the rest to ``StoreHost.fail_orphan``, which ends each with the
store's compare-and-set, so of several processes sweeping the same file exactly one ends a job.

**Purge** (every ``purge_interval`` s): deletes expired jobs (by the ``expires_at`` index; their
claims go with them by trigger), claims whose job was never created and whose time lapsed, and
wake-up events beyond the newest ``events.KEEP``. Reads treat expired rows as absent whether or
not they were purged; the purge only gives the space back. It works in batches, each its own
short transaction, so other processes never wait long for the write lock.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from typing import TYPE_CHECKING

import structlog
from bifrost_async.store import StoreError

from .events import trim
from .queries import LIVE, write

if TYPE_CHECKING:
    from .store import SqliteJobStore

log = structlog.get_logger(__name__)

#: Rows one sweep or one purge transaction handles.
BATCH = 500


def _orphans(conn: sqlite3.Connection, now: float) -> list[str]:
    query = (
        "SELECT record FROM jobs WHERE lease_expires_at < ? AND status IN ('pending', 'processing')"
        " ORDER BY lease_expires_at LIMIT ?"
    )
    return [str(row[0]) for row in conn.execute(query, (now, BATCH))]


async def sweep_once(store: SqliteJobStore) -> list[str]:
    """Fail every job whose lease ran out by the store's clock and that this process does not
    run; the ids this call failed. Raises :class:`~bifrost_async.store.StoreUnavailable`."""
    now = store.clock()
    records = await store.reader.run(lambda conn: _orphans(conn, now))
    failed: list[str] = []
    for record in records:
        job = store.decode(record)
        if store.host.holds(job.id):
            continue  # running here: a missed renewal does not make it an orphan
        if await store.host.fail_orphan(job) is not None:
            failed.append(job.id)
    if failed:
        log.info("sqlite_store.orphans_failed", count=len(failed))
    return failed


def _purge_batch(conn: sqlite3.Connection, now: float) -> int:
    with write(conn):
        jobs = conn.execute(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE expires_at <= ? LIMIT ?)", (now, BATCH)
        ).rowcount
        claims = conn.execute(
            f"DELETE FROM claims WHERE lapses_at IS NOT NULL AND lapses_at <= :now"
            f" AND NOT EXISTS (SELECT 1 FROM jobs WHERE id = claims.job_id AND {LIVE})",
            {"now": now},
        ).rowcount
        events = trim(conn)
    return int(jobs + claims + events)


async def purge_once(store: SqliteJobStore) -> int:
    """Delete expired jobs, lapsed claims and old events, batch by batch; rows deleted."""
    total = 0
    while True:
        now = store.clock()
        deleted = await store.writer.run(functools.partial(_purge_batch, now=now))
        total += deleted
        if deleted < BATCH:
            return total


async def every(seconds: float, work: str, store: SqliteJobStore) -> None:
    """Run ``sweep_once`` or ``purge_once`` every ``seconds`` until cancelled; an unavailable
    database only skips a round (the store has logged it)."""
    step = {"sweep": sweep_once, "purge": purge_once}[work]
    while True:
        await asyncio.sleep(seconds)
        try:
            await step(store)
        except StoreError:
            pass
        except Exception:
            log.exception(f"sqlite_store.{work}_failed")
