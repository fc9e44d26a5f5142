"""A third-party store plugin in one file: a dict-backed store named ``"dict"``.

docs/STORES.md walks through this file step by step. In short:

1. **Options**: a frozen dataclass, parsed from ``StoreContext.options`` (strings from
   ``--store-option``, the environment or TOML) by :func:`bifrost_async.store.parse_store_options`,
   which types the values and refuses unknown keys; ``validate()`` range-checks them.
2. **The store**: a class with the :class:`bifrost_async.store.JobStore` methods. This one keeps
   jobs in one process's memory, so it is *not* shared: ``serve --workers 2`` refuses it.
3. **The factory**: ``dict_store(context)`` parses options and builds the store, with no I/O (the
   middleware calls it once while it is built, to check the options before a server starts).
4. **Registration**: the ``register_stores`` hook, ``register("dict", dict_store)`` (a store that
   every process shares passes ``shared=True``).
5. **The kit**: ``tests/e2e/test_examples.py`` runs the store contract on it::

       class TestDictStore(StoreContract):
           @pytest.fixture
           def store_factory(self):
               return dict_store

A real plugin ships as a distribution ``bifrost-async-<name>`` whose pyproject declares::

    [project.entry-points.bifrost_async]
    dict = "bifrost_async_dict"

and is then found automatically; here the module is passed as ``plugins=[...]``. Run the wrapped
example app with it::

    python examples/custom_store_plugin.py
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Collection

from bifrost_async import Job, JobStatus, OwnerShareFull, StoreContext, StoreFull, hookimpl
from bifrost_async.store import RegisterStore, Waiters, may_move, page_of, parse_store_options, wait_for_job

# -- 1. options ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DictStoreOptions:
    """Every option of the ``dict`` store (``--store-option max_jobs=500``), with its default."""

    #: Live jobs the store keeps; ``None``: the middleware's ``max_jobs``; 0: no bound.
    max_jobs: int | None = None

    def validate(self) -> None:
        """Called by ``parse_store_options``: a ``ValueError`` naming the option stops startup."""
        if self.max_jobs is not None and self.max_jobs < 0:
            raise ValueError("dict store option max_jobs must not be negative")


# -- 2. the store --------------------------------------------------------------------------------


class DictStore:
    """Jobs in a plain dict, guarded by a lock so that ``update`` is one atomic step."""

    def __init__(self, context: StoreContext, options: DictStoreOptions) -> None:
        self.clock = context.clock
        self.max_jobs = context.max_jobs if options.max_jobs is None else options.max_jobs  # 0: no bound
        self.max_owner_jobs = context.max_owner_jobs  # live jobs one owner may hold (0: no share)
        self.jobs: dict[str, Job] = {}
        self.lock = asyncio.Lock()
        self.waiters = Waiters()  # woken on terminal updates and deletes (long-poll, cancel)
        self.claims: dict[str, tuple[str, str, float]] = {}  # claim -> job id, fingerprint, lapse

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self.jobs.clear()

    def _live(self, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        if job is not None and job.expired(self.clock()):
            del self.jobs[job_id]
            return None
        return job

    async def create(self, job: Job) -> None:
        async with self.lock:
            held = self._live(job.id)
            if held == job:
                return  # the same record again (a retried write): success, as the contract says
            if held is not None:
                raise ValueError(f"job {job.id} exists already")  # another record: refused
            for job_id in list(self.jobs):
                self._live(job_id)  # drop expired jobs before judging the bound
            if self.max_jobs and len(self.jobs) >= self.max_jobs:
                raise StoreFull(f"the dict store holds its maximum of {self.max_jobs} jobs")
            if self.max_owner_jobs and await self.owner_jobs(job.owner) >= self.max_owner_jobs:
                raise OwnerShareFull(f"this caller holds its share of {self.max_owner_jobs} jobs")
            self.jobs[job.id] = job.copy()
            held = self.claims.get(job.idempotency_claim or "")
            if held is not None and held[0] == job.id:  # created: the claim now lives as the job does
                self.claims[job.idempotency_claim or ""] = (job.id, held[1], float("-inf"))

    async def get(self, job_id: str) -> Job | None:
        job = self._live(job_id)
        return job.copy() if job is not None else None

    async def update(self, job: Job, *, expect: Collection[JobStatus]) -> bool:
        async with self.lock:
            current = self._live(job.id)
            if current is not None and current == job:
                return True  # the same record again (a retried write): success
            if current is None or current.status not in expect or not may_move(current.status, job.status):
                return False
            self.jobs[job.id] = job.copy()
        if job.status.terminal:
            self.waiters.wake(job.id)
        return True

    # The extensions' part of the contract (docs/EXTENSIONS.md).

    async def wait(self, job_id: str, timeout: float) -> Job | None:  # noqa: ASYNC109
        return await wait_for_job(self.waiters, self.get, job_id, timeout)

    async def delete(self, job_id: str) -> bool:
        async with self.lock:
            job = self._live(job_id)
            if job is None:
                return False
            del self.jobs[job_id]
            self.claims.pop(job.idempotency_claim or "", None)
        self.waiters.wake(job_id)
        return True

    async def claim_idempotency_key(
        self, claim: str, fingerprint: str, job_id: str, ttl: float
    ) -> tuple[str | None, bool]:
        async with self.lock:
            held = self.claims.get(claim)
            if held is not None and held[0] == job_id:
                return None, True  # a retried claim for the same job: still granted
            # a claim lives while its job does, or until it lapses if its job was never created
            if held is not None and (self._live(held[0]) is not None or self.clock() < held[2]):
                return held[0], held[1] == fingerprint
            self.claims[claim] = (job_id, fingerprint, self.clock() + ttl)
            return None, True

    async def owner_jobs(self, owner: str) -> int:
        return sum(1 for job_id in list(self.jobs) if (job := self._live(job_id)) and job.owner == owner)

    async def find_idempotency_key(self, claim: str) -> tuple[str, str] | None:
        held = self.claims.get(claim)
        if held is not None and (self._live(held[0]) is not None or self.clock() < held[2]):
            return held[0], held[1]
        return None

    async def release_idempotency_key(self, claim: str, job_id: str) -> None:
        held = self.claims.get(claim)
        if held is not None and held[0] == job_id and job_id not in self.jobs:  # its submit failed
            del self.claims[claim]

    async def list_jobs(
        self,
        owner: str,
        request_type: str,
        *,
        status: JobStatus | None = None,
        cursor: str | None = None,
        limit: int = 20,
    ) -> tuple[list[Job], str | None]:
        live = [job for job_id in list(self.jobs) if (job := self._live(job_id)) is not None]
        page, next_cursor = page_of(live, owner, request_type, status=status, cursor=cursor, limit=limit)
        return [job.copy() for job in page], next_cursor


# -- 3. the factory ------------------------------------------------------------------------------


def dict_store(context: StoreContext) -> DictStore:
    """The store factory: the clock, bound, share and options in; a store out, no I/O yet."""
    return DictStore(context, parse_store_options(DictStoreOptions, context.options, store="dict"))


# -- 4. registration -----------------------------------------------------------------------------


@hookimpl
def register_stores(register: RegisterStore) -> None:
    """Register the store ``dict``: one process's memory, so not shared (no ``shared=True``)."""
    register("dict", dict_store)


if __name__ == "__main__":
    from pathlib import Path

    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Route

    from bifrost_async import AsyncJobsMiddleware

    sys.path.insert(0, str(Path(__file__).parent))
    from transcription_app import transcribe  # the example's synchronous endpoint

    bare = Starlette(routes=[Route("/v1/audio/transcriptions", transcribe, methods=["POST"])])
    app = AsyncJobsMiddleware(bare, store="dict", plugins=[sys.modules[__name__]])
    uvicorn.run(app, host="127.0.0.1", port=8000)
