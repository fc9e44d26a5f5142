"""The Redis work queue's admission: the bounds read from the shared stream, and a filled slot
published to it (the request stored first, then the entry, by one script).

``queue_size`` is compared with ``XLEN`` (entries waiting or running on every instance), the
owner's share with its count in ``queue:owners``, both read in one round trip and not reserved:
submits racing on several instances may pass a bound by a few. A waiting job's place is its
entry's sequence number less the entries read so far (``queue:added`` / ``queue:taken``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from types import TracebackType
from typing import Any

import redis.asyncio as aioredis
import structlog
from bifrost_async.jobs import Job
from bifrost_async.queue import QueueOptions, QueueRefused, Slot, WorkItem
from bifrost_async.store import StoreUnavailable

from .guard import UNAVAILABLE, guard
from .request_dir import DirectoryRequests
from .requests import RedisRequests, RequestLost

log = structlog.get_logger(__name__)


class RedisSlot(Slot):
    """A slot whose job is written to the shared stream (and its request to Redis) when filled."""

    def __init__(self, queue: SharedAdmission, owner: str) -> None:
        super().__init__(queue, owner)
        self._redis_queue = queue

    async def enqueue(self, item: WorkItem) -> bool:
        """Store the request in pieces, then add the stream entry; the local spool is closed.
        Raises :class:`~bifrost_async.store.StoreUnavailable` if Redis fails (nothing is left)."""
        self._filled = await self._redis_queue.publish(item)
        return self._filled

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._redis_queue._release(self._owner)


class SharedAdmission:
    """The service's side of :class:`~bifrost_async_redis.queue.RedisWorkQueue`."""

    config: QueueOptions
    accepting: bool
    closing: bool
    stream: str
    jobs_key: str
    taken_key: str
    added_key: str
    owners_key: str
    _scripts: dict[str, Any]
    _admitting: int
    _idle: asyncio.Event
    _length: int

    @property
    def redis(self) -> aioredis.Redis:
        raise NotImplementedError

    @property
    def requests(self) -> RedisRequests | DirectoryRequests:
        raise NotImplementedError

    def _check_idle(self) -> None:
        raise NotImplementedError

    async def admit(self, owner: str = "") -> Slot:
        """A slot, unless shutting down (``closed``), the owner has ``owner_queue_share()``
        entries waiting or running on any instance (``owner_full``), or the shared stream holds
        ``queue_size`` entries (``full``). Read, not reserved: submits racing on several instances
        may pass the bounds by a few."""
        if not self.accepting:
            raise QueueRefused("closed")
        with guard():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xlen(self.stream)
                pipe.hget(self.owners_key, _digest(owner))
                length, owned = await pipe.execute()
        self._length = int(length)
        share = self.config.owner_queue_share()
        if share and int(owned or 0) >= share:
            raise QueueRefused("owner_full")
        if self._length >= self.config.queue_size:
            raise QueueRefused("full")
        self._admitting += 1
        self._idle.clear()
        return RedisSlot(self, owner)

    async def publish(self, item: WorkItem) -> bool:
        job_id = item.job.id
        if self.closing:
            return False
        try:
            with guard():
                keys = [self.stream, self.jobs_key, self.added_key, self.owners_key]
                args = [job_id, item.attempt, _digest(item.job.owner)]

                async def publish(client: Any) -> object:
                    return await self._scripts["PUBLISH"](keys=keys, args=args, client=client)

                if isinstance(self.requests, RedisRequests):  # in the request's last round trip
                    await self.requests.save(job_id, item.request, then=publish)
                else:
                    await self.requests.save(job_id, item.request)
                    await publish(self.redis)
        except RequestLost as exc:  # the request directory cannot be written
            log.error("redis_queue.request_not_stored", job_id=job_id, error=str(exc))
            raise StoreUnavailable(str(exc)) from None
        except StoreUnavailable:
            with contextlib.suppress(*UNAVAILABLE, OSError):
                await self.requests.drop(job_id)
            raise
        finally:
            item.request.close()  # the job's request lives in Redis now
        return True

    def _fill(self, item: WorkItem) -> bool:  # the Slot protocol; RedisSlot publishes instead
        raise NotImplementedError

    def _release(self, owner: str) -> None:
        self._admitting -= 1
        self._check_idle()

    def discard(self, job_id: str) -> bool:
        """Cancelled jobs are skipped when an instance reads their entry (the store says so)."""
        return False

    def position(self, job_id: str) -> int | None:
        """Not known without asking Redis: see :meth:`positions`."""
        return None

    async def positions(self, job_ids: list[str]) -> dict[str, int]:
        """1-based places of waiting jobs in the shared stream (``seq - taken``), in one round trip;
        jobs running, ended or unknown are left out."""
        if not job_ids:
            return {}
        with guard():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hmget(self.jobs_key, job_ids)
                pipe.get(self.taken_key)
                entries, taken = await pipe.execute()
        places: dict[str, int] = {}
        for job_id, entry in zip(job_ids, entries, strict=True):
            if entry is not None:
                place = int(entry.split(b" ")[1]) - int(taken or 0)
                if place > 0:
                    places[job_id] = place
        return places

    async def abandoned(self, job: Job) -> bool:
        """True if no entry of ``job`` is in the stream (its submit's instance died before it
        was queued): nobody will run it, so a poll or the sweep may fail it ``worker_lost``."""
        with guard():
            return not await self.redis.hexists(self.jobs_key, job.id)


def _digest(owner: str) -> str:
    """The owner as the per-owner count knows it (any plugin's string, hashed)."""
    return hashlib.sha256(owner.encode()).hexdigest()[:40]
