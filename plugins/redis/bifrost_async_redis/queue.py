"""``RedisWorkQueue``: the ``redis`` work queue, on a Redis Stream with one consumer group.

Every instance pointed at the same Redis and prefix shares the stream ``{prefix}queue`` and the
group ``workers``; each instance is one consumer (its worker name, ``host:pid``).

- **Submit**: the job is stored (the store), its request written in pieces
  (:mod:`bifrost_async_redis.requests`), then ``XADD {prefix}queue job=<id> attempt=<n>``. The
  entry carries only the id and the attempt: the job record stays in the store, the only copy.
- **Take**: each free worker reads one entry (``XREADGROUP ... COUNT 1``), so an instance takes
  work only when it has a worker for it and idle instances take what busy ones cannot. The job is
  read from the store (gone or ended: the entry is acknowledged and skipped) and its request
  rebuilt in a local spool.
- **Lease**: while a job runs, its entry's idle time is reset every third of ``lease_seconds``
  (``XCLAIM ... JUSTID`` to itself). An instance that dies stops doing that: after
  ``lease_seconds`` another instance's reclaimer takes the entry (``XAUTOCLAIM``) and puts it back
  as a fresh entry of the next attempt (``XADD`` + ``XACK``, one transaction), or, when
  ``max_attempts`` runs were lost, fails the job ``worker_lost``. The stored job stays
  ``processing`` meanwhile; the next run expects that. The first result wins (the store's
  compare-and-set); a late one is dropped.
- **Done**: ``XACK`` + ``XDEL`` the entry and delete the stored request.
- **Shutdown**: workers stop reading; a run not finished within the grace, and any entry read but
  not started, is handed back at once (fresh entry, same attempt: a deploy is not a lost run).
- **Bound**: ``XLEN`` (entries waiting or running, across instances) against ``queue_size``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis.asyncio as aioredis
import structlog
from bifrost_async.jobs import Job, JobStatus
from bifrost_async.queue import (
    Keyring,
    QueueContext,
    QueueOptions,
    WorkItem,
    failure,
    finish_job,
)
from bifrost_async.store import JobStore, StoreUnavailable

from . import queue_scripts
from .guard import UNAVAILABLE, guard
from .queue_admission import SharedAdmission
from .queue_leases import GROUP, reclaim_forever, renew_forever, reraise_cancellation, text
from .request_dir import DirectoryRequests
from .requests import RedisRequests, RequestLost
from .store import RedisJobStore

log = structlog.get_logger(__name__)

#: Longest a worker blocks in one read, in ms: it then re-checks whether shutdown began.
_BLOCK_MS = 1000
#: Seconds the stored request outlives its submit if no end deletes it.
_REQUEST_TTL = 7 * 86400


class RedisWorkQueue(SharedAdmission):
    """The :class:`bifrost_async.queue.WorkQueue` every instance on one Redis shares."""

    distributed = True

    def __init__(self, context: QueueContext, *, keyring: Keyring, store: RedisJobStore) -> None:
        self.config: QueueOptions = context.config
        self.store: JobStore = store
        self._redis_store = store
        self._keyring = keyring
        self.consumer = context.worker_name
        self.finished_hook = context.finished
        #: The process's view of Redis: take-overs wait while it may not judge leases.
        self.reachability = context.reachability
        self.prefix = store.options.prefix
        self.stream = f"{self.prefix}queue"
        self.jobs_key = f"{self.prefix}queue:jobs"
        self.added_key = f"{self.prefix}queue:added"
        self.taken_key = f"{self.prefix}queue:taken"
        self.owners_key = f"{self.prefix}queue:owners"
        self._scripts: dict[str, Any] = {}
        self._cursor = "0-0"
        self._redis: aioredis.Redis | None = None
        self._requests: RedisRequests | DirectoryRequests | None = None
        self.accepting = False
        self.closing = False
        #: Jobs this instance took and has not finished: job id -> (entry id, item).
        self._held: dict[str, tuple[str, WorkItem]] = {}
        self._handed_back: set[str] = set()
        self._admitting = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopped = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._length = 0

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def redis(self) -> aioredis.Redis:
        """The store's client: one pool serves the store and the queue (after :meth:`start`)."""
        if self._redis is None:
            raise RuntimeError("the redis queue is not started")
        return self._redis

    @property
    def requests(self) -> RedisRequests | DirectoryRequests:
        """Where the jobs' requests are stored (after :meth:`start`)."""
        if self._requests is None:
            raise RuntimeError("the redis queue is not started")
        return self._requests

    async def start(self) -> None:
        """Create the group (and the stream) if needed; start the lease renewer and reclaimer."""
        self._redis = self._redis_store.redis
        directory = self.config.request_dir
        self._requests = (
            DirectoryRequests(directory, keyring=self._keyring, prefix=self.prefix)
            if directory
            else RedisRequests(self._redis, prefix=self.prefix, keyring=self._keyring, ttl=_REQUEST_TTL)
        )
        for name in ("PUBLISH", "REQUEUE", "ACK"):
            self._scripts[name] = self._redis.register_script(getattr(queue_scripts, name))
        with contextlib.suppress(Exception):  # BUSYGROUP: it exists; Redis down: retried on read
            await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        self._background = [
            asyncio.create_task(renew_forever(self), name="bifrost-async-redis-queue-leases"),
            asyncio.create_task(reclaim_forever(self), name="bifrost-async-redis-queue-reclaim"),
        ]

    async def close(self) -> None:
        """Stop the background tasks; hand back any entry read but never started (a worker
        cancelled mid-read); wait for the acks in flight."""
        self._stopped.set()
        for task in self._background:
            task.cancel()
        if self._background:  # bounded: a stop must never hang on a Redis call
            await asyncio.wait(self._background, timeout=5)
        self._background = []
        with contextlib.suppress(*UNAVAILABLE):
            pending = await self.redis.xpending_range(
                self.stream, GROUP, "-", "+", 100, consumername=self.consumer
            )
            held_entries = {entry for entry, _ in self._held.values()}
            for row in pending:
                entry_id = text(row["message_id"])
                if entry_id not in held_entries:
                    await self.requeue(entry_id, attempt_delta=0)
            if not held_entries:  # nothing of ours is pending: leave the group tidy for the next
                await self.redis.xgroup_delconsumer(self.stream, GROUP, self.consumer)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def holds(self, job_id: str) -> bool:
        return job_id in self._held

    def held_jobs(self) -> list[Job]:
        """None waiting here: what this instance holds is running (the runner renews those)."""
        return []

    @property
    def queued(self) -> int:
        """Entries in the shared stream when last admitted (waiting or running, all instances)."""
        return self._length

    @property
    def waiting(self) -> int:
        return self._length

    # -- the runner's side -----------------------------------------------------------------------

    async def take(self) -> WorkItem:
        """The next job from the shared stream (one entry per free worker)."""
        while True:
            reraise_cancellation()  # a cancelled read may come back as an empty answer
            if not self.accepting:
                await asyncio.Event().wait()  # shutting down: read nothing more (cancelled at stop)
            try:
                with guard():
                    read: Any = await self.redis.xreadgroup(
                        GROUP, self.consumer, {self.stream: ">"}, count=1, block=_BLOCK_MS
                    )
            except StoreUnavailable:
                reraise_cancellation()
                await self._pause()
                continue
            except Exception as exc:  # NOGROUP after a flush: make it again
                reraise_cancellation()
                log.warning("redis_queue.read_failed", error_type=type(exc).__name__)
                with contextlib.suppress(Exception):
                    await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
                await self._pause()
                continue
            for _, entries in read or []:
                with contextlib.suppress(*UNAVAILABLE):  # the place count is advisory
                    await self.redis.incrby(self.taken_key, len(entries))
                for entry_id, fields in entries:
                    item = await self._deliver(text(entry_id), fields)
                    if item is not None:
                        return item

    async def _deliver(self, entry_id: str, fields: dict[Any, Any]) -> WorkItem | None:
        job_id, attempt = text(fields.get(b"job", b"")), int(fields.get(b"attempt", 1))
        if not self.accepting:  # shutdown began while this read was blocked: hand it on at once
            await self.requeue(entry_id, attempt_delta=0)
            return None
        try:
            job = await self.store.get(job_id)
        except Exception as exc:  # Redis down: the entry stays pending, reclaimed after a lease
            log.warning("redis_queue.delivery_failed", job_id=job_id, error_type=type(exc).__name__)
            return None
        if job is None or job.status.terminal:  # cancelled, expired or ended by another run
            self._spawn(self.ack(entry_id, job_id))
            return None
        try:
            request = await self.requests.load(
                job_id, memory_bytes=self.config.spool_memory_bytes, spool_dir=self.config.spool_dir
            )
        except RequestLost as exc:
            log.error("job.request_lost", job_id=job_id, error=str(exc))
            outcome = failure(500, str(exc), job.extra_fields, type="server_error", code="request_lost")
            await finish_job(
                self.store,
                job,
                outcome,
                now=self.config.clock(),
                expect=job.status,
                on_finished=self.finished_hook,
            )
            self._spawn(self.ack(entry_id, job_id))
            return None
        except Exception as exc:  # Redis down mid-delivery: the entry stays pending, reclaimed later
            log.warning("redis_queue.delivery_failed", job_id=job_id, error_type=type(exc).__name__)
            return None
        item = WorkItem(job=job, request=request, attempt=attempt, expect=job.status)
        self._held[job_id] = (entry_id, item)
        self._idle.clear()
        if attempt > 1 or job.status is JobStatus.PROCESSING:
            log.info("job.redelivered", job_id=job_id, attempt=attempt, previous_worker=job.worker)
        return item

    def done(self, item: WorkItem) -> None:
        """The run ended (or was handed back): acknowledge the entry and drop the request."""
        job_id = item.job.id
        held = self._held.pop(job_id, None)
        if held is not None and job_id not in self._handed_back:
            self._spawn(self.ack(held[0], job_id))
        self._handed_back.discard(job_id)
        self._check_idle()

    async def hand_back(self, item: WorkItem, *, ran: bool) -> bool:
        """Put a job this instance will not finish back on the stream at once (same attempt: a
        deploy is not a lost run), so another instance runs it now rather than after a lease."""
        held = self._held.get(item.job.id)
        if held is None:
            return False
        try:
            await self.requeue(held[0], attempt_delta=0, job_id=item.job.id, attempt=item.attempt)
        except Exception as exc:
            log.warning("redis_queue.hand_back_failed", job_id=item.job.id, error_type=type(exc).__name__)
            return False
        self._handed_back.add(item.job.id)
        return True

    async def settled(self) -> None:
        """Until no submit is being admitted and no job taken here is unfinished."""
        await self._idle.wait()

    def take_all_nowait(self) -> list[WorkItem]:
        """Nothing waits here: the stream is shared."""
        return []

    async def join(self) -> None:
        await self._idle.wait()

    # -- internals -------------------------------------------------------------------------------

    def _check_idle(self) -> None:
        if self._admitting == 0 and not self._held:
            self._idle.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def ack(self, entry_id: str, job_id: str) -> None:
        keys = [self.stream, self.jobs_key, self.owners_key]
        keys += [self.requests.head_key(job_id), self.requests.body_key(job_id)]
        try:
            current = await self._scripts["ACK"](keys=keys, args=[entry_id, job_id, GROUP])
            if current and not self.requests.in_redis:
                await self.requests.drop(job_id)
        except Exception as exc:  # the request expires on its own; the entry is reclaimed and skipped
            log.warning("redis_queue.ack_failed", job_id=job_id, error_type=type(exc).__name__)

    async def requeue(
        self, entry_id: str, *, attempt_delta: int, job_id: str | None = None, attempt: int | None = None
    ) -> None:
        """Replace ``entry_id`` by a fresh entry at the stream's end, in one transaction."""
        if job_id is None or attempt is None:
            rows: Any = await self.redis.xrange(self.stream, entry_id, entry_id)
            if not rows:
                await self.redis.xack(self.stream, GROUP, entry_id)
                return
            fields = rows[0][1]
            job_id, attempt = text(fields[b"job"]), int(fields.get(b"attempt", 1))
        keys = [self.stream, self.jobs_key, self.added_key]
        await self._scripts["REQUEUE"](keys=keys, args=[entry_id, job_id, attempt + attempt_delta, GROUP])

    async def _pause(self) -> None:
        """A short wait before reading again after a failure (not for correctness)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), 0.5)
