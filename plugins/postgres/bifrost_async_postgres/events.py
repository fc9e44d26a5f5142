"""Job-ended notifications across processes: ``LISTEN`` on one dedicated connection per store.

Every terminal update and every delete runs ``pg_notify(<channel>, <job id>)`` in its own
transaction, so PostgreSQL delivers it when (and only if) the write commits. Each store keeps one
connection outside its pool that LISTENs and wakes the local waiters: long-polls, and the
runner's watch on each job it runs (how a job cancelled on another process stops here).
Notifications sent while the connection is down are lost, so after every (re)connection every
waiter is woken to re-read its job: a missed notification costs a re-read, never a wait to the
deadline. A dead connection is noticed by the driver (the server closed it) or, for a silent
network, by a ``SELECT 1`` every :data:`HEALTH_CHECK` seconds.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog

if TYPE_CHECKING:
    from .store import PostgresJobStore

log = structlog.get_logger(__name__)

#: Seconds between checks that the listening connection still answers.
HEALTH_CHECK = 5.0
#: Seconds between reconnection attempts while PostgreSQL is unreachable.
RETRY = 0.5


async def listen(store: PostgresJobStore) -> None:
    """LISTEN on the store's channel and wake its waiters per notification, until cancelled;
    reconnect after any failure. ``store.listening`` is set while a LISTEN is active."""
    opts = store.options

    def notified(connection: Any, pid: int, channel: str, payload: object) -> None:
        store.waiters.wake(str(payload))

    while True:
        conn: asyncpg.Connection | None = None
        lost = asyncio.Event()
        try:
            conn = await asyncpg.connect(opts.url, timeout=opts.connect_timeout)
            conn.add_termination_listener(lambda connection, lost=lost: lost.set())
            await conn.add_listener(opts.channel, notified)
            store.listening.set()
            store.waiters.wake_all()  # anything announced while we were not listening is re-read
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), HEALTH_CHECK)
                except TimeoutError:
                    await conn.fetchval("SELECT 1", timeout=opts.command_timeout)
            log.warning("postgres_store.listener_lost", error_type="ConnectionClosed")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure: reconnect, never stop listening
            log.warning("postgres_store.listener_lost", error_type=type(exc).__name__)
        finally:
            store.listening.clear()
            if conn is not None:
                conn.terminate()  # no goodbye: the connection may be dead already
        await asyncio.sleep(RETRY)
