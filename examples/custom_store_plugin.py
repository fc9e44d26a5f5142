"""A third-party store plugin in one file: a dict-backed store named ``"dict"``.

A real plugin ships as a distribution ``bifrost-async-<name>`` whose pyproject declares::

    [project.entry-points.bifrost_async]
    dict = "bifrost_async_dict"

and is then found automatically; here the module is passed as ``plugins=[...]``. Its tests run
the store contract (see ``tests/test_examples.py``)::

    class TestDictStore(StoreContract):
        @pytest.fixture
        def store_factory(self):
            return dict_store

Run the wrapped example app with it::

    python examples/custom_store_plugin.py
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Collection

from bifrost_async import Job, JobStatus, OwnerShareFull, StoreContext, StoreFull, hookimpl
from bifrost_async.jobs import may_move
from bifrost_async.store import StoreFactory, page_of
from bifrost_async.waiters import Waiters, wait_for_job


class DictStore:
    """Jobs in a plain dict, guarded by a lock so that ``update`` is one atomic step."""

    def __init__(self, context: StoreContext) -> None:
        self.clock = context.clock
        self.max_jobs = context.max_jobs
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
            if self._live(job.id) == job:
                return  # the same record again (a retried write): success, as the contract says
            for job_id in list(self.jobs):
                self._live(job_id)  # drop expired jobs before judging the bound
            if len(self.jobs) >= self.max_jobs:
                raise StoreFull(f"the dict store holds its maximum of {self.max_jobs} jobs")
            if self.max_owner_jobs and await self.owner_jobs(job.owner) >= self.max_owner_jobs:
                raise OwnerShareFull(f"this caller holds its share of {self.max_owner_jobs} jobs")
            self.jobs[job.id] = Job.from_record(job.to_record())
            held = self.claims.get(job.idempotency_claim or "")
            if held is not None and held[0] == job.id:  # created: the claim now lives as the job does
                self.claims[job.idempotency_claim or ""] = (job.id, held[1], float("-inf"))

    async def get(self, job_id: str) -> Job | None:
        job = self._live(job_id)
        return Job.from_record(job.to_record()) if job is not None else None

    async def update(self, job: Job, *, expect: Collection[JobStatus]) -> bool:
        async with self.lock:
            current = self._live(job.id)
            if current is not None and current == job:
                return True  # the same record again (a retried write): success
            if current is None or current.status not in expect or not may_move(current.status, job.status):
                return False
            self.jobs[job.id] = Job.from_record(job.to_record())
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
        return [Job.from_record(job.to_record()) for job in page], next_cursor


def dict_store(context: StoreContext) -> DictStore:
    """The store factory: called once per middleware with the clock, bound and options."""
    return DictStore(context)


@hookimpl
def register_stores(register: Callable[[str, StoreFactory], None]) -> None:
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
