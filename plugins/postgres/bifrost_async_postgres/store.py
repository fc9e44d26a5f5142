"""``PostgresJobStore``: the :class:`bifrost_async.store.JobStore` contract on a shared PostgreSQL.

Every process pointed at the same database and schema sees the same jobs, bounds and wake-ups.
Each write is one call of a PL/pgSQL function (``migrations/0001_jobs.sql``), so it is one
round trip and one transaction: the compare-and-set locks the job's row; creates, deletes and
purges first lock the single ``total`` row, which makes the bound and the per-owner share exact
under READ COMMITTED. A terminal update or a delete sends ``NOTIFY`` in its own transaction;
one dedicated connection per store LISTENs and wakes local waiters (``events.py``). Reads judge
expiry by the injected clock (an expired row is absent before the purge deletes it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeAlias, TypeVar

import asyncpg
import structlog
from bifrost_async.jobs import Job, JobStatus, may_move
from bifrost_async.store import (
    OwnerShareFull,
    StoreFull,
    StoreHost,
    StoreUnavailable,
    Waiters,
    wait_for_job,
)

from . import migrations
from .claims import PostgresClaims
from .events import listen
from .guard import RETRYABLE, guard
from .listing import list_jobs
from .options import PostgresStoreOptions
from .webhooks import PostgresWebhookRecords

log = structlog.get_logger(__name__)

_T = TypeVar("_T")
#: What a pooled operation receives (the pool hands out proxies of connections).
Connection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[Any]"


class PostgresJobStore(PostgresClaims, PostgresWebhookRecords):
    """Jobs in PostgreSQL, shared by every process that uses the same database and schema; also
    the managed webhook endpoints and their history (:mod:`bifrost_async_postgres.webhooks`)."""

    def __init__(
        self,
        options: PostgresStoreOptions,
        *,
        clock: Callable[[], float],
        max_jobs: int,
        max_owner_jobs: int = 0,
    ) -> None:
        self.options = options
        self.clock = clock
        self.max_jobs = max_jobs
        #: Live jobs one owner may hold, across every process on this schema (0: no share).
        self.max_owner_jobs = max_owner_jobs
        self.waiters = Waiters()
        #: Set while the LISTEN connection is up (tests wait on it).
        self.listening = asyncio.Event()
        #: The middleware's side of the sweep (:meth:`attach`).
        self.host = StoreHost.unattached(self, clock)
        self._pool: asyncpg.Pool | None = None
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        schema = options.quoted_schema
        live = "(expires_at IS NULL OR expires_at > $2)"
        self._sql_get = f"SELECT record FROM {schema}.jobs WHERE id = $1 AND {live}"
        self._sql_create = f"SELECT {schema}.create_job($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        self._sql_update = f"SELECT {schema}.update_job($1, $2, $3, $4, $5, $6, $7, $8)"
        self._sql_delete = f"SELECT {schema}.delete_job($1, $2, $3)"

    def attach(self, host: StoreHost) -> None:
        """Called by a started middleware (:class:`bifrost_async.store.StoreHost`)."""
        self.host = host

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Build the pool, start the listener, the sweep and the purge, and bring the schema up
        to date (``migrate=true``) or check it is (``migrate=false``: :class:`RuntimeError` if
        not). PostgreSQL being down is not fatal: requests answer 503 until it is back, and the
        schema is checked on the first request that reaches it."""
        opts = self.options
        self._pool = await asyncpg.create_pool(
            opts.url,
            min_size=0,  # connect on demand: a server down at start is a 503, not a crash
            max_size=opts.pool_size,
            timeout=opts.connect_timeout,
            command_timeout=opts.command_timeout,
            max_inactive_connection_lifetime=60,
            # asyncpg's default reset sends a query (UNLISTEN, RESET ALL, advisory unlock...) on
            # every release, doubling the round trips of each operation; pooled connections hold
            # no session state of ours (no SET, LISTEN or session lock), so only the driver's own
            # reset runs, which still rolls back a transaction left open
            reset=_keep_session,
        )
        try:
            await self._ensure_schema(at_start=True)
        except StoreUnavailable as exc:
            log.warning("postgres_store.unavailable_at_start", url=opts.safe_url(), error=str(exc))
        except RuntimeError:
            await self._pool.close()
            self._pool = None
            raise
        else:
            log.info("postgres_store.started", url=opts.safe_url(), schema=opts.schema)
        from .sweep import purge_forever, sweep_forever  # sweep imports this module

        self._tasks.append(asyncio.create_task(listen(self), name="bifrost-async-postgres-listen"))
        if opts.sweep_interval > 0:
            self._tasks.append(asyncio.create_task(sweep_forever(self), name="bifrost-async-postgres-sweep"))
        if opts.purge_interval > 0:
            self._tasks.append(asyncio.create_task(purge_forever(self), name="bifrost-async-postgres-purge"))

    async def close(self) -> None:
        """Stop the background tasks, wake every waiter, close the pool."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.waiters.wake_all()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), self.options.command_timeout)
            except Exception:  # a dead server: drop the connections without goodbyes
                pool.terminate()

    async def _ensure_schema(self, *, at_start: bool = False) -> None:
        """Migrate (or check) the schema once per process; raises StoreUnavailable while down.

        A schema that cannot be used (behind with ``migrate=false``, or newer than this plugin)
        stops the server at start (:class:`RuntimeError`); found later, when the server was
        unreachable at start, it is a 503 logged as an error, never a 500."""
        if self._schema_ready:
            return
        async with self._schema_lock:
            if self._schema_ready:
                return
            schema = self.options.schema

            async def run(conn: Connection) -> None:
                if self.options.migrate:
                    applied = await migrations.migrate(conn, schema)
                    if applied:
                        log.info("postgres_store.migrated", schema=schema, versions=applied)
                    return
                have = await migrations.current_version(conn, schema)
                migrations.check_not_newer(have, schema)
                if have < migrations.latest():
                    raise RuntimeError(
                        f"postgres store schema {schema!r} is at version {have}, not "
                        f"{migrations.latest()}, and the store option migrate is false: run "
                        f"'python -m bifrost_async_postgres migrate --schema {schema}' first"
                    )

            try:
                await self.call(run, checked=False)
            except RuntimeError as exc:
                if at_start:
                    raise
                log.error("postgres_store.schema_unusable", schema=schema, error=str(exc))
                raise StoreUnavailable(f"the postgres store's schema is not usable: {exc}") from None
            self._schema_ready = True

    async def call(self, op: Callable[[Connection], Awaitable[_T]], *, checked: bool = True) -> _T:
        """Run ``op`` on a pooled connection, its failures as the core's store errors; one retry
        on a connection-level failure (every write is idempotent). ``checked``: migrate or check
        the schema first if that has not happened yet."""
        if self._pool is None:
            raise StoreUnavailable("the postgres store is not started")
        if checked and not self._schema_ready:
            await self._ensure_schema()
        for attempt in (1, 2):
            with guard():
                try:
                    async with self._pool.acquire(timeout=self.options.command_timeout) as conn:
                        try:
                            return await op(conn)
                        except RETRYABLE:
                            # its state is unknown: the pool must open a fresh one, not hand it out
                            conn.terminate()
                            raise
                except RETRYABLE:
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the contract --------------------------------------------------------------------------

    async def create(self, job: Job) -> None:
        """See :meth:`bifrost_async.store.JobStore.create`."""
        args = (
            job.id,
            job.owner,
            job.request_type,
            job.status.value,
            float(job.created_at),
            _float(job.expires_at),
            None if job.status.terminal else _float(job.lease_expires_at),
            job.idempotency_claim,
            job.to_record_json(),
            float(self.clock()),
            self.max_jobs,
            self.max_owner_jobs,
        )
        stored = await self.call(lambda conn: conn.fetchval(self._sql_create, *args))
        if stored == -1:
            raise StoreFull(f"the job store holds its maximum of {self.max_jobs} live jobs")
        if stored == -2:
            raise OwnerShareFull(f"this caller holds its share of {self.max_owner_jobs} live jobs")
        if stored != 1:
            raise ValueError(f"job {job.id} exists already")

    async def get(self, job_id: str) -> Job | None:
        """See :meth:`bifrost_async.store.JobStore.get`."""
        now = float(self.clock())
        raw = await self.call(lambda conn: conn.fetchval(self._sql_get, job_id, now))
        return None if raw is None else Job.from_record_json(raw)

    async def update(self, job: Job, *, expect: Collection[JobStatus]) -> bool:
        """See :meth:`bifrost_async.store.JobStore.update`."""
        allowed = [status.value for status in expect if may_move(status, job.status)]
        if not allowed:
            return False
        args = (
            job.id,
            job.status.value,
            _float(job.expires_at),
            None if job.status.terminal else _float(job.lease_expires_at),
            job.to_record_json(),
            float(self.clock()),
            allowed,
            self.options.channel,
        )
        written = await self.call(lambda conn: conn.fetchval(self._sql_update, *args))
        if written == 1 and job.status.terminal:
            self.waiters.wake(job.id)  # at once here; other processes hear the NOTIFY
        return bool(written == 1)

    async def wait(self, job_id: str, timeout: float) -> Job | None:  # noqa: ASYNC109 - returns at the timeout
        """See :meth:`bifrost_async.store.JobStore.wait` (woken by ``events.listen``)."""
        return await wait_for_job(self.waiters, self.get, job_id, timeout)

    async def delete(self, job_id: str) -> bool:
        """See :meth:`bifrost_async.store.JobStore.delete`."""
        args = (job_id, float(self.clock()), self.options.channel)
        removed = await self.call(lambda conn: conn.fetchval(self._sql_delete, *args))
        self.waiters.wake(job_id)
        return bool(removed == 1)

    async def owner_jobs(self, owner: str) -> int:
        """See :meth:`bifrost_async.store.JobStore.owner_jobs`."""
        schema = self.options.quoted_schema
        sql = (
            f"SELECT coalesce((SELECT n FROM {schema}.owners WHERE owner = $1), 0)"
            f" - (SELECT count(*) FROM {schema}.jobs WHERE owner = $1 AND expires_at <= $2)"
        )
        now = float(self.clock())
        return int(await self.call(lambda conn: conn.fetchval(sql, owner, now)))

    async def list_jobs(
        self,
        owner: str,
        request_type: str,
        *,
        status: JobStatus | None = None,
        cursor: str | None = None,
        limit: int = 20,
    ) -> tuple[list[Job], str | None]:
        """See :meth:`bifrost_async.store.JobStore.list_jobs` (and ``listing.py``)."""
        return await list_jobs(self, owner, request_type, status=status, cursor=cursor, limit=limit)


async def _keep_session(connection: object) -> None:
    """The pool's reset: nothing beyond the driver's own (see :meth:`PostgresJobStore.start`)."""


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)
