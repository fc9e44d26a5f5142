"""The ``memory`` store: jobs in a cachetools TLRU cache, for one process.

Each job expires at its own ``expires_at`` (unfinished jobs never expire). The cache is bounded
by ``max_jobs``; when it is full of live jobs a submit is refused (503) rather than evicting a
job someone may still poll.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Collection
from typing import Any

from cachetools import TLRUCache

from bifrost_async.hookspecs import hookimpl
from bifrost_async.jobs import Job, JobStatus, may_move
from bifrost_async.store import StoreContext, StoreFactory, StoreFull


class _BoundedTLRU(TLRUCache[str, Job]):
    """A TLRU cache that refuses to evict live entries: cachetools calls ``popitem`` only when
    full after dropping expired items, so raising there turns eviction into refusal."""

    def popitem(self) -> tuple[str, Job]:
        raise StoreFull(f"the job store holds its maximum of {self.maxsize} jobs")


def _time_to_use(_key: str, job: Job, _now: float) -> float:
    return job.expires_at if job.expires_at is not None else math.inf


class MemoryStore:
    """In-process job store. Jobs are copied in and out, so callers never share a record."""

    def __init__(self, clock: Callable[[], float], max_jobs: int) -> None:
        self._jobs = _BoundedTLRU(maxsize=max_jobs, ttu=_time_to_use, timer=clock)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._jobs.clear()

    async def create(self, job: Job) -> None:
        if job.id in self._jobs:
            raise ValueError(f"job {job.id} exists already")
        self._jobs[job.id] = copy.copy(job)

    async def get(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        return copy.copy(job) if job is not None else None

    async def update(self, job: Job, *, expect: Collection[JobStatus]) -> bool:
        current = self._jobs.get(job.id)
        if current is None or current.status not in expect or not may_move(current.status, job.status):
            return False
        self._jobs[job.id] = copy.copy(job)
        return True

    def __len__(self) -> int:
        return len(self._jobs)


def memory_store(context: StoreContext) -> MemoryStore:
    """Factory for the ``memory`` store."""
    return MemoryStore(context.clock, context.max_jobs)


@hookimpl
def register_stores(register: Callable[[str, StoreFactory], None]) -> None:
    register("memory", memory_store)


__all__: list[Any] = ["MemoryStore", "memory_store"]
