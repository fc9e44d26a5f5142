"""``SqliteJobStore``: the :class:`bifrost_async.store.JobStore` contract on one SQLite file.

Every process that opens the same file (WAL mode) sees the same jobs, bounds, claims and
wake-ups, so ``serve --workers N`` and several services on one machine share jobs with no server.
Writes are single ``BEGIN IMMEDIATE`` transactions (``queries.py``); wake-ups cross processes
through a log table (``events.py``); orphans and expired rows are handled by ``maintenance.py``.
Two connections per instance, each on its own thread (``db.py``): one writes, one reads, so a
long-poll's re-read never queues behind a write waiting for another process's lock; a third reads
jobs by id on the event loop's thread when that needs no wait (``db.QuickReader``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection

import structlog
from bifrost_async.jobs import Job, JobStatus, may_move
from bifrost_async.store import (
    OwnerShareFull,
    StoreFull,
    StoreHost,
    StoreUnavailable,
    Waiters,
    decode_cursor,
    encode_cursor,
    wait_for_job,
)

from . import queries
from .db import Connection, QuickReader
from .events import tail
from .maintenance import every
from .options import SqliteStoreOptions
from .webhooks import SqliteWebhookRecords

log = structlog.get_logger(__name__)


class SqliteJobStore(SqliteWebhookRecords):
    """Jobs in one SQLite database file, shared by every process on the machine that opens it;
    also the managed webhook endpoints and their history (:mod:`bifrost_async_sqlite.webhooks`)."""

    def __init__(
        self,
        options: SqliteStoreOptions,
        *,
        clock: Callable[[], float],
        max_jobs: int,
        max_owner_jobs: int = 0,
    ) -> None:
        self.options = options
        self.clock = clock
        #: Live jobs in the file, across every process (0: no bound).
        self.max_jobs = max_jobs
        #: Live jobs one owner may hold, across every process (0: no share).
        self.max_owner_jobs = max_owner_jobs
        #: The connection that writes (every write is one transaction on its thread).
        self.writer = self._connection("write")
        #: The connection that reads jobs and tails the wake-up log.
        self.reader = self._connection("read")
        #: Short reads on the event loop's thread when they need no wait (``db.QuickReader``).
        self.quick = QuickReader(self.reader)
        self.waiters = Waiters()
        #: Set once the wake-up tail has started (tests wait on it).
        self.tailing = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: The middleware's side of the sweep (:meth:`attach`).
        self.host = StoreHost.unattached(self, clock)

    def _connection(self, name: str) -> Connection:
        opts = self.options
        return Connection(
            opts.path, busy_timeout=opts.busy_timeout, synchronous=opts.synchronous, name=name, schema=True
        )

    def attach(self, host: StoreHost) -> None:
        """Called by a started middleware (:class:`bifrost_async.store.StoreHost`): the sweep
        then skips jobs this process runs and tells the ``job_finished`` observers."""
        self.host = host

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the file (creating it and the schema if needed) and start the wake-up tail, the
        sweep and the purge. A locked or unreadable database is not fatal: requests answer 503
        until it can be read, then the store recovers by itself."""
        try:
            await self.writer.run(lambda conn: None)
        except StoreUnavailable as exc:
            log.warning("sqlite_store.unavailable_at_start", path=str(self.options.path), error=str(exc))
        else:
            log.info("sqlite_store.started", path=str(self.options.path))
        opts = self.options
        self._tasks.append(asyncio.create_task(tail(self), name="bifrost-async-sqlite-tail"))
        if opts.sweep_interval > 0:
            self._tasks.append(asyncio.create_task(every(opts.sweep_interval, "sweep", self)))
        if opts.purge_interval > 0:
            self._tasks.append(asyncio.create_task(every(opts.purge_interval, "purge", self)))

    async def close(self) -> None:
        """Stop the background tasks, wake every waiter, close both connections."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.waiters.wake_all()
        self.quick.close()
        await self.writer.close()
        await self.reader.close()

    # -- the contract --------------------------------------------------------------------------

    @staticmethod
    def decode(record: str) -> Job:
        """A stored record as a fresh :class:`Job` (every read returns its own copy)."""
        return Job.from_record_json(record)

    async def create(self, job: Job) -> None:
        """See :meth:`bifrost_async.store.JobStore.create`."""
        now = self.clock()
        outcome = await self.writer.run(
            lambda conn: queries.create(conn, job, now, self.max_jobs, self.max_owner_jobs)
        )
        if outcome == "full":
            raise StoreFull(f"the job store holds its maximum of {self.max_jobs} live jobs")
        if outcome == "share":
            raise OwnerShareFull(f"this caller holds its share of {self.max_owner_jobs} live jobs")
        if outcome == "exists":
            raise ValueError(f"job {job.id} exists already")

    async def get(self, job_id: str) -> Job | None:
        """See :meth:`bifrost_async.store.JobStore.get`."""
        now = self.clock()
        record = await self.quick.run(lambda conn: queries.get(conn, job_id, now))
        return None if record is None else self.decode(record)

    async def update(self, job: Job, *, expect: Collection[JobStatus]) -> bool:
        """See :meth:`bifrost_async.store.JobStore.update`."""
        allowed = [status.value for status in expect if may_move(status, job.status)]
        now = self.clock()
        written = await self.writer.run(lambda conn: queries.update(conn, job, allowed, now))
        if written and job.status.terminal:
            self.waiters.wake(job.id)  # this process at once; others through the event log
        return written

    async def owner_jobs(self, owner: str) -> int:
        """See :meth:`bifrost_async.store.JobStore.owner_jobs`."""
        now = self.clock()
        return await self.reader.run(lambda conn: queries.owner_jobs(conn, owner, now))

    # -- extensions ----------------------------------------------------------------------------

    async def wait(self, job_id: str, timeout: float) -> Job | None:  # noqa: ASYNC109 - returns at the timeout
        """See :meth:`bifrost_async.store.JobStore.wait` (woken through ``events.tail``)."""
        return await wait_for_job(self.waiters, self.get, job_id, timeout)

    async def delete(self, job_id: str) -> bool:
        """See :meth:`bifrost_async.store.JobStore.delete`."""
        now = self.clock()
        removed = await self.writer.run(lambda conn: queries.delete(conn, job_id, now))
        if removed:
            self.waiters.wake(job_id)
        return removed

    async def claim_idempotency_key(
        self, claim: str, fingerprint: str, job_id: str, ttl: float
    ) -> tuple[str | None, bool]:
        """See :meth:`bifrost_async.store.JobStore.claim_idempotency_key`."""
        now = self.clock()
        return await self.writer.run(
            lambda conn: queries.claim(conn, claim, fingerprint, job_id, now + ttl, now)
        )

    async def find_idempotency_key(self, claim: str) -> tuple[str, str] | None:
        """See :meth:`bifrost_async.store.JobStore.find_idempotency_key`."""
        now = self.clock()
        return await self.quick.run(lambda conn: queries.find_claim(conn, claim, now))

    async def release_idempotency_key(self, claim: str, job_id: str) -> None:
        """See :meth:`bifrost_async.store.JobStore.release_idempotency_key`."""
        now = self.clock()
        await self.writer.run(lambda conn: queries.release_claim(conn, claim, job_id, now))

    async def list_jobs(
        self,
        owner: str,
        request_type: str,
        *,
        status: JobStatus | None = None,
        cursor: str | None = None,
        limit: int = 20,
    ) -> tuple[list[Job], str | None]:
        """See :meth:`bifrost_async.store.JobStore.list_jobs`: one indexed range, newest first."""
        after = decode_cursor(cursor) if cursor is not None else None
        now = self.clock()
        state = None if status is None else status.value
        records = await self.quick.run(
            lambda conn: queries.list_jobs(conn, owner, request_type, state, after, limit + 1, now)
        )
        page = [self.decode(record) for record in records[:limit]]
        return page, encode_cursor(page[-1]) if len(records) > limit and page else None
