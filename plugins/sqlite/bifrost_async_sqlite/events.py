"""Wake-ups across processes without pub/sub: an append-only log tailed by every process.

Every terminal update and every delete appends ``(id, job_id)`` to the ``events`` table in the
same transaction as the write, so no write goes unannounced and no announcement precedes its
write. Each store instance runs one task that, every ``notify_interval`` seconds, asks SQLite
``PRAGMA data_version`` (a counter in shared memory that moves when another connection commits:
an idle tick reads no table at all; both run on the loop's thread through ``db.QuickReader``,
so an idle tick costs no thread hop) and, when it moved, reads ``WHERE id > last_seen`` (a range
of the primary key) and wakes the local :class:`~bifrost_async.store.Waiters` of those jobs:
long-polls, and the runner's watch on every job it runs, which is how a job cancelled in another
process stops here.

The cost of waking by polling is latency, not load: a waiter in another process hears of its
job at most ``notify_interval`` (default 0.05 s) after the write commits (in the writing process,
at once), for ~20 cheap reads a second per process. Raise the interval for less idle work, lower
it for snappier long-polls. The log is trimmed to the newest :data:`KEEP` rows by the purge; a
process whose tail fell behind the trimmed rows (it sees a gap in the ids) wakes every waiter to
re-read: a missed row costs a re-read, never a wait to the deadline.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from typing import TYPE_CHECKING

import structlog
from bifrost_async.store import StoreError

if TYPE_CHECKING:
    from .store import SqliteJobStore

log = structlog.get_logger(__name__)

#: Rows read per query of the log.
BATCH = 1000
#: Rows the purge keeps; a tail more than this many events behind wakes everyone.
KEEP = 10000


def last_event(conn: sqlite3.Connection) -> int:
    """The id of the newest event ever written (from AUTOINCREMENT's sequence, so it survives
    trimming), where a new tail starts."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return int(row[0]) if row is not None else 0


def read_events(
    conn: sqlite3.Connection, last_seen: int, version: tuple[int, int] | None
) -> tuple[tuple[int, int], list[tuple[int, str]]]:
    """``(version, events after last_seen)``; no table is read when ``version`` (this connection
    and its ``PRAGMA data_version``, which only compares within one connection) has not moved."""
    now_version = (id(conn), int(conn.execute("PRAGMA data_version").fetchone()[0]))
    if now_version == version:
        return now_version, []
    rows: list[tuple[int, str]] = []
    while True:
        batch = conn.execute(
            "SELECT id, job_id FROM events WHERE id > ? ORDER BY id LIMIT ?", (last_seen, BATCH)
        ).fetchall()
        rows += [(int(event_id), str(job_id)) for event_id, job_id in batch]
        if len(batch) < BATCH:
            return now_version, rows
        last_seen = rows[-1][0]


def trim(conn: sqlite3.Connection) -> int:
    """Drop all but the newest :data:`KEEP` events; how many went."""
    newest = last_event(conn)
    return conn.execute("DELETE FROM events WHERE id <= ?", (newest - KEEP,)).rowcount


async def tail(store: SqliteJobStore) -> None:
    """Wake the store's waiters for every event other processes (and this one) log, until
    cancelled. An unavailable database only skips ticks; waiters are woken to re-read after it."""
    last_seen: int | None = None
    version: tuple[int, int] | None = None
    while True:
        try:
            if last_seen is None:
                last_seen = await store.reader.run(last_event)
                store.waiters.wake_all()  # anything that ended before the tail (re)started is re-read
                store.tailing.set()
            read = functools.partial(read_events, last_seen=last_seen, version=version)
            version, rows = await store.quick.run(read)
            if rows and rows[0][0] > last_seen + 1:
                store.waiters.wake_all()  # the rows in between were trimmed: re-read everything
            for event_id, job_id in rows:
                store.waiters.wake(job_id)
                last_seen = event_id
        except StoreError:
            # start again from the newest event once the database answers, and wake everyone then
            last_seen = version = None
        except Exception:
            log.exception("sqlite_store.tail_failed")
            last_seen = version = None
        await asyncio.sleep(store.options.notify_interval)
