"""The ``memory`` store: jobs in a cachetools TLRU cache, for one process.

Each job expires at its own ``expires_at`` (unfinished jobs never expire). The cache is bounded
twice: by ``max_jobs`` and by bytes (the ``max_bytes`` store option, 1 GiB by default), each job
counted as :data:`JOB_OVERHEAD` plus :attr:`~bifrost_async.core.jobs.Job.result_bytes`. When either is
reached a submit is refused (503) rather than evicting a job someone may still poll; a job that
ends is always stored, so the bytes may pass ``max_bytes`` by the results of the jobs running at
that moment (at most ``concurrency`` x ``max_result_bytes``). Waiters are asyncio events set by
terminal updates and deletes, so a long-poll wakes the moment its job ends.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from typing import Any

from cachetools import TLRUCache

from bifrost_async.core.hookspecs import hookimpl
from bifrost_async.core.jobs import Job, JobStatus, may_move
from bifrost_async.core.numbers import parse_size
from bifrost_async.core.store import (
    OwnerShareFull,
    RegisterStore,
    StoreContext,
    StoreFull,
    page_of,
)
from bifrost_async.core.waiters import Waiters, wait_for_job
from bifrost_async.core.webhook_records import MemoryWebhookRecords

#: What the memory store counts for a job besides its result, in bytes: the record, its copies'
#: bookkeeping and the cache entry (``bench/`` measures ~1.4 KB of RSS per job beyond the result).
JOB_OVERHEAD = 1536
#: The default ``max_bytes``.
DEFAULT_MAX_BYTES = 1024**3


def _time_to_use(_key: str, job: Job, _now: float) -> float:
    return job.expires_at if job.expires_at is not None else math.inf


def _job_size(job: Job) -> int:
    return JOB_OVERHEAD + job.result_bytes


class MemoryStore(MemoryWebhookRecords):
    """In-process job store. Jobs are copied in and out, so callers never share a record.
    It also keeps the managed webhook endpoints and their history (:class:`WebhookRecords`).

    ``max_bytes`` bounds the bytes of stored jobs as :data:`JOB_OVERHEAD` plus each job's
    ``result_bytes``; 0 means no bound. ``max_owner_jobs`` bounds the live jobs of one owner
    (0: no share).
    """

    def __init__(
        self,
        clock: Callable[[], float],
        max_jobs: int,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        max_owner_jobs: int = 0,
    ) -> None:
        super().__init__()
        self._clock = clock
        self.max_jobs = max_jobs
        self.max_bytes = max_bytes
        self.max_owner_jobs = max_owner_jobs
        #: owner -> ids of the jobs it created; ids of expired or deleted jobs are dropped when
        #: the set reaches the share (counting is then exact where it decides anything)
        self._owned: dict[str, set[str]] = {}
        # The cache itself never evicts (an unbounded maxsize); create() refuses instead, so a
        # job that ends is always stored and nobody's live job disappears. ``currsize`` is the
        # sum of _job_size over the jobs held, kept by cachetools through expiry as well.
        self._jobs: TLRUCache[str, Job] = TLRUCache(
            maxsize=math.inf, ttu=_time_to_use, timer=clock, getsizeof=_job_size
        )
        self._waiters = Waiters()
        #: claim -> (job id, fingerprint, lapses at by the clock or None while its job lives)
        self._claims: dict[str, tuple[str, str, float | None]] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._jobs.clear()
        self._claims.clear()
        self._owned.clear()
        self._waiters.wake_all()

    async def create(self, job: Job) -> None:
        held = self._jobs.get(job.id)
        if held is not None and held == job:
            return  # the same record again: a repeated create succeeds (JobStore's idempotency rule)
        if held is not None:
            raise ValueError(f"job {job.id} exists already")
        if self._refusal(job) is not None:
            self._jobs.expire()  # expired jobs do not count: drop them, then judge again
            refusal = self._refusal(job)
            if refusal is not None:
                raise StoreFull(refusal)
        if self.max_owner_jobs and self._owner_count(job.owner) >= self.max_owner_jobs:
            raise OwnerShareFull(f"this caller holds its share of {self.max_owner_jobs} live jobs")
        self._jobs[job.id] = job.copy()  # cachetools drops expired jobs here anyway
        if len(self._owned) > (self.max_jobs or len(self._jobs)):  # more owners than jobs: some are gone
            for owner in list(self._owned):
                self._owner_count(owner, exact=True)
        self._owned.setdefault(job.owner, set()).add(job.id)
        claim = self._claims.get(job.idempotency_claim or "")
        if claim is not None and claim[0] == job.id:
            self._claims[job.idempotency_claim or ""] = (claim[0], claim[1], None)

    async def get(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        return job.copy() if job is not None else None

    async def update(self, job: Job, *, expect: Collection[JobStatus]) -> bool:
        current = self._jobs.get(job.id)
        if current is not None and current.status is job.status and current == job:
            return True  # the same record again: a repeated write succeeds (idempotency rule)
        if current is None or current.status not in expect or not may_move(current.status, job.status):
            return False
        self._jobs[job.id] = job.copy()
        if job.status.terminal:
            self._waiters.wake(job.id)
        return True

    def _refusal(self, job: Job) -> str | None:
        """Why storing ``job`` now would pass a bound, or ``None``."""
        if self.max_jobs and len(self._jobs) >= self.max_jobs:  # 0: no bound
            return f"the job store holds its maximum of {self.max_jobs} jobs"
        if self.max_bytes and self._jobs.currsize + _job_size(job) > self.max_bytes:
            return f"the job store holds its maximum of {self.max_bytes} bytes of jobs"
        return None

    # -- extensions ----------------------------------------------------------------------------

    async def wait(self, job_id: str, timeout: float) -> Job | None:  # noqa: ASYNC109 - returns, never raises, at the timeout
        return await wait_for_job(self._waiters, self.get, job_id, timeout)

    async def delete(self, job_id: str) -> bool:
        job = self._jobs.pop(job_id, None)
        if job is None:
            return False
        self._owned.get(job.owner, set()).discard(job_id)
        claim = self._claims.get(job.idempotency_claim or "")
        if claim is not None and claim[0] == job_id:
            del self._claims[job.idempotency_claim or ""]
        self._waiters.wake(job_id)
        return True

    async def claim_idempotency_key(
        self, claim: str, fingerprint: str, job_id: str, ttl: float
    ) -> tuple[str | None, bool]:
        now = self._clock()
        if len(self._claims) > (self.max_jobs or len(self._jobs)):  # 0: no bound
            self._prune_claims(now)
        held = self._claims.get(claim)
        if held is not None and held[0] == job_id:
            return None, True  # a repeated claim for the same job: granted again, unchanged
        if held is not None and self._claim_live(held, now):
            return held[0], held[1] == fingerprint
        self._claims[claim] = (job_id, fingerprint, now + ttl)
        return None, True

    async def owner_jobs(self, owner: str) -> int:
        return self._owner_count(owner)

    async def find_idempotency_key(self, claim: str) -> tuple[str, str] | None:
        held = self._claims.get(claim)
        if held is None or not self._claim_live(held, self._clock()):
            return None
        return held[0], held[1]

    async def release_idempotency_key(self, claim: str, job_id: str) -> None:
        held = self._claims.get(claim)
        if held is not None and held[0] == job_id and job_id not in self._jobs:
            del self._claims[claim]

    async def list_jobs(
        self,
        owner: str,
        request_type: str,
        *,
        status: JobStatus | None = None,
        cursor: str | None = None,
        limit: int = 20,
    ) -> tuple[list[Job], str | None]:
        now = self._clock()
        self._jobs.expire()
        live = [job for job in list(self._jobs.values()) if not job.expired(now)]
        page, next_cursor = page_of(live, owner, request_type, status=status, cursor=cursor, limit=limit)
        return [job.copy() for job in page], next_cursor

    # -- helpers -------------------------------------------------------------------------------

    def _claim_live(self, held: tuple[str, str, float | None], now: float) -> bool:
        job_id, _, lapses_at = held
        if lapses_at is None:  # its job was created: the claim lives exactly as long as the job
            return job_id in self._jobs
        return now < lapses_at or job_id in self._jobs

    def _owner_count(self, owner: str, *, exact: bool = False) -> int:
        """Live jobs of ``owner``: the raw count below the share (an upper bound, cheap), the
        exact one after dropping gone jobs at or above it (or when there is no share)."""
        ids = self._owned.get(owner)
        if not ids:
            return 0
        if not exact and self.max_owner_jobs and len(ids) < self.max_owner_jobs:
            return len(ids)
        now = self._clock()
        gone = [job_id for job_id in ids if (held := self._jobs.get(job_id)) is None or held.expired(now)]
        ids.difference_update(gone)
        if not ids:
            del self._owned[owner]  # owners who never come back leave nothing behind
        return len(ids)

    def _prune_claims(self, now: float) -> None:
        """Drop dead claims; run only when there are more claims than jobs could hold."""
        for claim, held in list(self._claims.items()):
            if not self._claim_live(held, now):
                del self._claims[claim]

    def __len__(self) -> int:
        return len(self._jobs)

    @property
    def bytes_held(self) -> int:
        """The bytes counted against ``max_bytes`` for the jobs held now (expired ones included
        until the next write drops them)."""
        return int(self._jobs.currsize)


def memory_store(context: StoreContext) -> MemoryStore:
    """Factory for the ``memory`` store. Its one option, ``max_bytes``, takes bytes as a number or
    a size such as ``"512MiB"`` or ``"2G"`` (0: no bound); any other option is an error."""
    options = dict(context.options)
    raw = options.pop("max_bytes", DEFAULT_MAX_BYTES)
    if options:
        raise ValueError(f"unknown memory store option(s): {', '.join(sorted(options))}; known: max_bytes")
    try:
        max_bytes = raw if isinstance(raw, int) and not isinstance(raw, bool) else parse_size(str(raw))
    except ValueError:
        raise ValueError(f"memory store option max_bytes: not a size: {raw!r}") from None
    if max_bytes < 0:
        raise ValueError("memory store option max_bytes must be 0 (no bound) or positive")
    return MemoryStore(context.clock, context.max_jobs, max_bytes, max_owner_jobs=context.max_owner_jobs)


@hookimpl
def register_stores(register: RegisterStore) -> None:
    register("memory", memory_store)


__all__: list[Any] = ["MemoryStore", "memory_store"]
