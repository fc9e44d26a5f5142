"""The public seam for stores that sweep their own orphans: ``attach(StoreHost)`` (issue 17)."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette

from bifrost_async import AsyncJobsMiddleware, Job, JobStatus, hookimpl
from bifrost_async.builtin.memory import memory_store
from bifrost_async.store import JobStore, RegisterStore, StoreContext, StoreHost
from bifrost_async.testing import FakeClock, make_job, processing


class AttachedStores:
    """Registers ``attached``: the memory store, plus an ``attach`` that keeps what it is given."""

    def __init__(self) -> None:
        self.hosts: list[StoreHost] = []
        self.finished: list[Job] = []

    @hookimpl
    def register_stores(self, register: RegisterStore) -> None:
        def factory(context: StoreContext) -> JobStore:
            store: Any = memory_store(context)
            store.attach = self.hosts.append
            return store  # type: ignore[no-any-return]

        register("attached", factory)

    @hookimpl
    def job_finished(self, job: Job) -> None:
        self.finished.append(job)


async def test_a_started_middleware_attaches_its_host_once_and_orphans_end_once() -> None:
    plugin = AttachedStores()
    middleware = AsyncJobsMiddleware(Starlette(), store="attached", plugins=[plugin])
    await middleware.startup()
    try:
        assert len(plugin.hosts) == 1
        host = plugin.hosts[0]
        assert middleware.store is not None
        clock = FakeClock()
        orphan = processing(make_job(clock, worker="dead-host:1"), clock)
        orphan.lease_expires_at = clock() - 1
        await middleware.store.create(orphan)
        assert not host.holds(orphan.id)  # nobody here runs it
        ended = await host.fail_orphan(orphan)
        assert ended is not None and ended.status is JobStatus.FAILED
        assert ended.error is not None and ended.error["error"]["code"] == "worker_lost"
        assert await host.fail_orphan(orphan) is None  # a second sweeper loses the compare-and-set
        assert [job.id for job in plugin.finished] == [orphan.id]  # observers hear of it once
        stored = await middleware.store.get(orphan.id)
        assert stored is not None and stored.status is JobStatus.FAILED
    finally:
        await middleware.shutdown()


async def test_an_unattached_host_ends_orphans_without_observers() -> None:
    clock = FakeClock()
    store = memory_store(StoreContext(clock=clock, max_jobs=10, options={}))
    await store.start()
    orphan = processing(make_job(clock), clock)
    await store.create(orphan)
    clock.advance(60)
    host = StoreHost.unattached(store, clock)
    assert not host.holds(orphan.id)
    ended = await host.fail_orphan(orphan)
    assert ended is not None and ended.completed_at == clock()
    clock.advance(0.001)  # another sweeper, a moment later (the very same record again would
    assert await host.fail_orphan(orphan) is None  # be a repeated write, which stores accept)
    await store.close()
