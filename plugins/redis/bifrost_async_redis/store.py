"""``RedisJobStore``: the :class:`bifrost_async.store.JobStore` contract on a shared Redis.

Every process that uses the same Redis and prefix sees the same jobs, so a job submitted to one
uvicorn worker or machine can be polled on any other. Writes are Lua scripts (``scripts.py``),
hence atomic; expiry is enforced twice: Redis forgets a finished job at ``expires_at``
(``PEXPIREAT``), and :meth:`get` also judges ``expires_at`` by the injected clock, so an expired
job answers 404 at once whatever the two clocks say.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Awaitable, Callable, Collection
from typing import Any, cast

import redis.asyncio as aioredis
import structlog
from bifrost_async.jobs import Job, JobStatus, may_move
from bifrost_async.store import OwnerShareFull, StoreFull, StoreHost, StoreUnavailable, Waiters, wait_for_job
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from . import scripts
from .events import listen
from .guard import guard
from .listing import list_jobs
from .options import RedisStoreOptions
from .outbox import UPDATE_AND_ENQUEUE, RedisWebhookOutbox
from .webhooks import RedisWebhookRecords

log = structlog.get_logger(__name__)

#: Seconds an owner's share set outlives its latest job's ``created_at + ttl``: room for the
#: job's queue wait and run, after which it ends and expires by then (see ``scripts.CREATE``).
SHARE_SLACK = 86400
#: Seconds :meth:`RedisJobStore.close` waits for each background task and for the pool to close.
CLOSE_WAIT = 5.0


class RedisJobStore(RedisWebhookRecords, RedisWebhookOutbox):
    """Jobs in Redis, shared by every process that points at the same server and prefix; also
    the managed webhook endpoints and their history (:mod:`bifrost_async_redis.webhooks`) and the
    durable outbox of webhook deliveries (:mod:`bifrost_async_redis.outbox`)."""

    def __init__(
        self,
        options: RedisStoreOptions,
        *,
        clock: Callable[[], float],
        max_jobs: int,
        max_owner_jobs: int = 0,
    ) -> None:
        self.options = options
        self.clock = clock
        self.max_jobs = max_jobs
        #: Live jobs one owner may hold, across every process on this Redis (0: no share).
        self.max_owner_jobs = max_owner_jobs
        self._redis: aioredis.Redis | None = None
        self._create: Any = None
        self._update: Any = None
        self._update_and_enqueue: Any = None
        self._delete: Any = None
        self._claim: Any = None
        self._find_claim: Any = None
        self._release_claim: Any = None
        self._owner_jobs: Any = None
        self._sweeper: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self.waiters = Waiters()
        #: job id -> terminal writes of it under way here (see :meth:`notified`).
        self._ending: dict[str, int] = {}
        #: Set once the job-ended subscription is active (tests wait on it).
        self.subscribed = asyncio.Event()
        #: The middleware's side of the sweep (:meth:`attach`): whether this process still holds a
        #: job (then it is alive, whatever Redis says), and how to end an orphan so that the
        #: ``job_finished`` observers hear of it.
        self.host = StoreHost.unattached(self, clock)
        #: The ``run_id`` of the Redis server the sweep last saw (a change: it restarted).
        self.run_id: str | None = None

    def attach(self, host: StoreHost) -> None:
        """Called by a started middleware (:class:`bifrost_async.store.StoreHost`)."""
        self.host = host

    # -- keys ----------------------------------------------------------------------------------

    #: Redis failures as the core's store errors (``with store.guard(): ...``).
    guard = staticmethod(guard)

    def job_key(self, job_id: str) -> str:
        """The hash that holds one job."""
        return f"{self.options.prefix}job:{job_id}"

    @property
    def jobs_key(self) -> str:
        """The sorted set of live jobs by expiry (``+inf`` while unfinished): the bound."""
        return f"{self.options.prefix}jobs"

    @property
    def leases_key(self) -> str:
        """The sorted set of unfinished jobs by lease expiry, which the sweep reads."""
        return f"{self.options.prefix}leases"

    @property
    def channel(self) -> str:
        """The pub/sub channel every terminal update and delete publishes the job id on."""
        return f"{self.options.prefix}ended"

    def owner_keys(self, owner: str, request_type: str) -> list[str]:
        """The list index of one owner's jobs of one type (by ``created_at``) and its twin (by
        expiry); none for public jobs (owner ``""``), which nobody can list. The owner string is
        hashed: it may be any plugin's choice of string."""
        if not owner:
            return []
        digest = hashlib.sha256(owner.encode()).hexdigest()[:40]
        prefix = self.options.prefix
        return [f"{prefix}owner:{digest}:{request_type}", f"{prefix}owner-expiry:{digest}:{request_type}"]

    def share_key(self, owner: str) -> str:
        """The set of every job one owner created (anonymous callers, owner ``""``, are one
        owner), for the per-owner share; members are judged live by the jobs index."""
        return f"{self.options.prefix}share:{hashlib.sha256(owner.encode()).hexdigest()[:40]}"

    def claim_key(self, claim: str | None) -> str:
        """The idempotency claim's key (a key that is never set when there is no claim)."""
        return f"{self.options.prefix}idem:{claim or '-'}"

    def _keys(self, job: Job) -> list[str]:
        """The scripts' keys: job, jobs, leases, claim[, owner index, its twin]."""
        common = [self.job_key(job.id), self.jobs_key, self.leases_key, self.claim_key(job.idempotency_claim)]
        return common + self.owner_keys(job.owner, job.request_type)

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def redis(self) -> aioredis.Redis:
        """The client (after :meth:`start`)."""
        if self._redis is None:
            raise RuntimeError("the redis store is not started")
        return self._redis

    async def start(self) -> None:
        """Build the connection pool and check Redis once. Redis being down is not fatal: the
        pool connects on demand, so the service answers 503 until Redis is back, then recovers."""
        opts = self.options
        pool = aioredis.BlockingConnectionPool.from_url(
            opts.url,
            max_connections=opts.max_connections,
            timeout=opts.socket_timeout,
            socket_timeout=opts.socket_timeout,
            socket_connect_timeout=opts.socket_connect_timeout,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), opts.retries),
            health_check_interval=30,
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        self._create = self._redis.register_script(scripts.CREATE)
        self._update = self._redis.register_script(scripts.UPDATE)
        self._update_and_enqueue = self._redis.register_script(UPDATE_AND_ENQUEUE)
        self._delete = self._redis.register_script(scripts.DELETE)
        self._claim = self._redis.register_script(scripts.CLAIM)
        self._find_claim = self._redis.register_script(scripts.FIND_CLAIM)
        self._release_claim = self._redis.register_script(scripts.RELEASE_CLAIM)
        self._owner_jobs = self._redis.register_script(scripts.OWNER_JOBS)
        self._listener = asyncio.create_task(
            listen(self, self.waiters, self.subscribed), name="bifrost-async-redis-events"
        )
        try:
            with self.guard():
                await self._redis.ping()
        except StoreUnavailable as exc:
            log.warning("redis_store.unavailable_at_start", url=opts.safe_url(), error=str(exc))
        else:
            log.info("redis_store.started", url=opts.safe_url(), prefix=opts.prefix)
        if opts.sweep_interval > 0:
            from .sweep import sweep_forever  # here, not at the top: sweep imports this module

            self._sweeper = asyncio.create_task(sweep_forever(self), name="bifrost-async-redis-sweep")

    async def close(self) -> None:
        """Stop the sweep and the subscription, wake every waiter, close the pool."""
        for task in (self._sweeper, self._listener):
            if task is not None:
                task.cancel()
                # bounded: a task stuck in a socket call must not hold up shutdown for ever
                done, _ = await asyncio.wait({task}, timeout=CLOSE_WAIT)
                if not done:
                    log.warning("redis_store.close_task_stuck", task=task.get_name())
        self._sweeper = self._listener = None
        self.waiters.wake_all()
        if self._redis is not None:
            redis, self._redis = self._redis, None
            try:
                async with asyncio.timeout(CLOSE_WAIT):
                    await redis.aclose(close_connection_pool=True)
            except TimeoutError:
                log.warning("redis_store.close_timeout", seconds=CLOSE_WAIT)

    # -- the contract --------------------------------------------------------------------------

    async def create(self, job: Job) -> None:
        """See :meth:`bifrost_async.store.JobStore.create`; ``StoreFull`` at ``max_jobs``."""
        with self.guard():
            share_until = math.ceil((job.created_at + job.ttl + SHARE_SLACK) * 1000)
            share = [self.share_key(job.owner), self.max_owner_jobs, share_until]
            args = [*self._args(job, self.max_jobs), repr(job.created_at), *share]
            stored = await self._create(keys=self._keys(job), args=args)
        if stored == -1:
            raise StoreFull(f"the job store holds its maximum of {self.max_jobs} live jobs")
        if stored == -2:
            raise OwnerShareFull(f"this caller holds its share of {self.max_owner_jobs} live jobs")
        if stored != 1:
            raise ValueError(f"job {job.id} exists already")

    async def get(self, job_id: str) -> Job | None:
        """See :meth:`bifrost_async.store.JobStore.get`. An unfinished job read is remembered
        (:meth:`~bifrost_async.store.Waiters.remember`): a wait on it right after, as a paced
        poll makes, then needs no second read unless the job ended meanwhile."""
        mark = self.waiters.mark()
        with self.guard():
            # redis-py types hget for its sync and async clients at once; this is the async one
            raw = await cast("Awaitable[bytes | None]", self.redis.hget(self.job_key(job_id), "record"))
        if raw is None:
            return None
        job = Job.from_record_json(raw)
        # Redis expires by its own real-time clock; the contract is judged by the injected one.
        if job.expired(self.clock()):
            return None
        self.waiters.remember(job, mark)
        return job

    async def update(self, job: Job, *, expect: Collection[JobStatus]) -> bool:
        """See :meth:`bifrost_async.store.JobStore.update`. An unfinished job written is
        remembered, as :meth:`get` does: the runner's cancellation watch, which starts right
        after the start write, then does not read the job back. A job ended here wakes this
        process's waiters with the ended job (:meth:`notified`)."""
        # The forward-only rule stays in Python (may_move); the script only compares statuses.
        allowed = [status.value for status in expect if may_move(status, job.status)]
        if not allowed:
            return False
        keys, args = self._keys(job), [*self._args(job), self.channel, *allowed]
        # a job's webhook delivery is enqueued by the very write that ends it (outbox.py)
        entry = self.outbox_entry_for(job) if job.status.terminal and self.outbox_entry_for else None
        mark = self.waiters.mark()
        ending = job.status.terminal
        if ending:  # its notification (or a rival's) is held back until the reply: see notified()
            self._ending[job.id] = self._ending.get(job.id, 0) + 1
        written = 0
        try:
            with self.guard():
                if entry is None:
                    written = await self._update(keys=keys, args=args)
                else:
                    written = await self._update_and_enqueue(
                        keys=[*keys, self.outbox_key], args=[*args, entry]
                    )
        finally:
            if ending:
                self._stop_ending(job, landed=written == 1)
        if written != 1:
            return False
        if not ending:
            self.waiters.remember(job, mark)
        return True

    def notified(self, job_id: str) -> None:
        """A job-ended notification for ``job_id`` (``events.listen``): wake this process's
        waiters on it, unless this process is ending that job itself right now; then the reply
        to that write wakes them (``_stop_ending``), and hands them the ended job when the write
        landed, so that a paced poll or a long-poll of a job that ran here answers without reading
        it back. The notification that would have woken them first is most often that very write's
        own, read off the subscription before the write's reply."""
        if job_id not in self._ending:
            self.waiters.wake(job_id)

    def _stop_ending(self, job: Job, *, landed: bool) -> None:
        """The end of a terminal write of ``job`` (landed, refused, failed or cancelled): wake
        its waiters, handing them the job when it landed (``Waiters.settle``). A notification
        held back meanwhile may have been another process's (a delete, a rival end); then this
        write did not land, or landed first, and the waiters read or take the job as it was."""
        left = self._ending.get(job.id, 1) - 1
        if left:
            self._ending[job.id] = left
        else:
            self._ending.pop(job.id, None)
        if landed:
            self.waiters.settle(job)
        else:
            self.waiters.wake(job.id)

    # -- extensions ----------------------------------------------------------------------------

    async def wait(self, job_id: str, timeout: float) -> Job | None:  # noqa: ASYNC109 - returns at the timeout
        """See :meth:`bifrost_async.store.JobStore.wait` (woken through ``events.listen``)."""
        job = await wait_for_job(self.waiters, self.get, job_id, timeout)
        # a job taken from the waiters rather than read is judged by the injected clock too
        return None if job is not None and job.expired(self.clock()) else job

    async def delete(self, job_id: str) -> bool:
        """See :meth:`bifrost_async.store.JobStore.delete`."""
        with self.guard():
            raw = await cast("Awaitable[bytes | None]", self.redis.hget(self.job_key(job_id), "record"))
        if raw is None:
            return False
        job = Job.from_record_json(raw)
        with self.guard():
            removed = await self._delete(
                keys=self._keys(job), args=[job_id, repr(self.clock()), self.channel]
            )
        return bool(removed == 1)

    async def claim_idempotency_key(
        self, claim: str, fingerprint: str, job_id: str, ttl: float
    ) -> tuple[str | None, bool]:
        """See :meth:`bifrost_async.store.JobStore.claim_idempotency_key`."""
        now = self.clock()
        value = f"{job_id}|{fingerprint}|{now + ttl!r}"
        # The key's own Redis expiry only bounds memory if the job is never created; liveness is
        # judged in the script by the injected clock, like every other read.
        lapse_ms = max(1, math.ceil(ttl * 1000))
        args = [value, lapse_ms, repr(now), f"{self.options.prefix}job:"]
        with self.guard():
            held = await self._claim(keys=[self.claim_key(claim)], args=args)
        if not held:
            return None, True
        held_id, held_fingerprint, _ = (held.decode() if isinstance(held, bytes) else str(held)).split("|")
        if held_id == job_id:
            return None, True  # our own claim, seen by a retry after a lost reply: still ours
        return held_id, held_fingerprint == fingerprint

    async def owner_jobs(self, owner: str) -> int:
        """See :meth:`bifrost_async.store.JobStore.owner_jobs`."""
        args = [self.share_key(owner), repr(self.clock()), self.max_owner_jobs]
        with self.guard():
            return int(await self._owner_jobs(keys=[self.jobs_key], args=args))

    async def find_idempotency_key(self, claim: str) -> tuple[str, str] | None:
        """See :meth:`bifrost_async.store.JobStore.find_idempotency_key`."""
        args = [repr(self.clock()), f"{self.options.prefix}job:"]
        with self.guard():
            held = await self._find_claim(keys=[self.claim_key(claim)], args=args)
        if not held:
            return None
        held_id, held_fingerprint, _ = (held.decode() if isinstance(held, bytes) else str(held)).split("|")
        return held_id, held_fingerprint

    async def release_idempotency_key(self, claim: str, job_id: str) -> None:
        """See :meth:`bifrost_async.store.JobStore.release_idempotency_key`."""
        with self.guard():
            await self._release_claim(
                keys=[self.claim_key(claim)], args=[job_id, f"{self.options.prefix}job:"]
            )

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

    # -- helpers -------------------------------------------------------------------------------

    def _args(self, job: Job, *bound: int) -> list[str | int]:
        """The scripts' shared arguments: id, record, status, now[, bound], lease, expiry."""
        record = job.to_record_json()
        lease = "" if job.status.terminal or job.lease_expires_at is None else repr(job.lease_expires_at)
        expires = "" if job.expires_at is None else repr(job.expires_at)
        # PEXPIREAT wants whole milliseconds; rounding up never forgets a job early.
        pxat: str | int = "" if job.expires_at is None else max(1, math.ceil(job.expires_at * 1000))
        return [job.id, record, job.status.value, repr(self.clock()), *bound, lease, expires, pxat]
