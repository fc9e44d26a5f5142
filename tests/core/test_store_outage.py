"""A store outage does not end live work (issue 14): the runner keeps a finished job's outcome
and writes it once the store answers, renewing leases first; polls do not judge a lease that
ran out while the store was down; the outage is logged once, not per retry.

The store is the memory store wrapped so that it can fail on demand; the real Redis case, with
processes and a restarted redis-server, is ``plugins/redis/tests/test_redis_outage.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import Any

import httpx
import structlog
from starlette.applications import Starlette

from bifrost_async import AsyncJobsMiddleware, Job, JobStatus, hookimpl
from bifrost_async.builtin.memory import MemoryStore
from bifrost_async.core.reachability import StoreReachability
from bifrost_async.store import StoreUnavailable, worker_lost
from bifrost_async.testing import FakeClock, make_job, processing
from tests.apps import make_app
from tests.helpers import Recorder


class OutageStore(MemoryStore):
    """A memory store that fails like an unreachable one: while :attr:`down`, or for the next
    ``fail_next`` calls once the first terminal write arrives (``fail_on_terminal``). Every
    update is logged as ``(landed | refused | failed, status written)``."""

    def __init__(self, clock: Any, max_jobs: int) -> None:
        super().__init__(clock, max_jobs)
        self.down = False
        self.fail_on_terminal = 0
        self.fail_next = 0
        self.failures = 0
        self.failed = asyncio.Event()
        self.refused = asyncio.Event()
        self.updates: list[tuple[str, JobStatus]] = []

    def _fail(self) -> None:
        if self.down or self.fail_next:
            self.fail_next = max(0, self.fail_next - 1)
            self.failures += 1
            self.failed.set()
            raise StoreUnavailable("the store is down (test)")

    async def get(self, job_id: str) -> Job | None:
        self._fail()
        return await super().get(job_id)

    async def create(self, job: Job) -> None:
        self._fail()
        await super().create(job)

    async def update(self, job: Job, *, expect: Collection[JobStatus]) -> bool:
        if job.status.terminal and self.fail_on_terminal:
            self.fail_next, self.fail_on_terminal = self.fail_on_terminal, 0
        try:
            self._fail()
        except StoreUnavailable:
            self.updates.append(("failed", job.status))
            raise
        written = await super().update(job, expect=expect)
        self.updates.append(("landed" if written else "refused", job.status))
        if not written:
            self.refused.set()
        return written


class Plugin:
    def __init__(self, store: OutageStore) -> None:
        self.store = store

    @hookimpl
    def register_stores(self, register: Any) -> None:
        register("outage", lambda context: self.store)


def _middleware(app: Any, store: OutageStore, recorder: Recorder) -> AsyncJobsMiddleware:
    return AsyncJobsMiddleware(app, plugins=[Plugin(store), recorder], store="outage", lease_seconds=0.6)


def _events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def test_a_finished_job_outlives_store_failures_and_its_lease_is_renewed_first() -> None:
    store = OutageStore(time.time, 10)
    store.fail_on_terminal = 6
    recorder, app = Recorder(), make_app()
    middleware = _middleware(app, store, recorder)
    transport = httpx.ASGITransport(app=middleware)
    with structlog.testing.capture_logs() as logs:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            submitted = await client.post("/v1/async/embeddings", json={"model": "test/gate", "input": "x"})
            job_id = submitted.json()["id"]
            await recorder.wait("started", job_id)
            app.state.gate.opened.set()  # the job ends; its first terminal write starts 6 failures
            finished = await recorder.wait("finished", job_id, timeout=60)
            polled = await client.get(f"/v1/async/embeddings/{job_id}")
        await middleware.shutdown()
    assert finished.status is JobStatus.COMPLETED
    assert polled.status_code == 200 and polled.json()["status"] == "completed", polled.text
    assert store.failures == 6 and store.fail_next == 0
    last_failure = max(n for n, (what, _) in enumerate(store.updates) if what == "failed")
    after = store.updates[last_failure + 1 :]
    # the store answered again: the lease was renewed before the result was written
    assert after[0] == ("landed", JobStatus.PROCESSING), store.updates
    assert ("landed", JobStatus.COMPLETED) in after, store.updates
    told = [entry["event"] for entry in logs if entry["event"].startswith("store.")]
    assert told == ["store.unreachable", "store.reachable"]
    assert not _events(logs, "job.outcome_lost")


async def test_a_job_ended_elsewhere_during_the_outage_keeps_that_end() -> None:
    store = OutageStore(time.time, 10)
    recorder, app = Recorder(), make_app()
    middleware = _middleware(app, store, recorder)
    transport = httpx.ASGITransport(app=middleware)
    with structlog.testing.capture_logs() as logs:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            submitted = await client.post("/v1/async/embeddings", json={"model": "test/gate", "input": "x"})
            job_id = submitted.json()["id"]
            running = await recorder.wait("started", job_id)
            store.down = True
            app.state.gate.opened.set()
            await asyncio.wait_for(store.failed.wait(), 30)  # the result is held, its write pending
            # meanwhile another process (which could reach the store) ended the job
            other = worker_lost(running, time.time())
            assert await MemoryStore.update(store, other, expect=(JobStatus.PROCESSING,))
            store.down = False
            await asyncio.wait_for(store.refused.wait(), 30)
            polled = await client.get(f"/v1/async/embeddings/{job_id}")
        await middleware.shutdown()  # waits for the worker, which logs the dropped outcome
    assert polled.json()["status"] == "failed" and polled.json()["error"]["error"]["code"] == "worker_lost"
    assert ("refused", JobStatus.COMPLETED) in store.updates
    assert ("landed", JobStatus.COMPLETED) not in store.updates
    assert [entry["job_id"] for entry in _events(logs, "job.outcome_dropped")] == [job_id]
    assert "finished" not in {kind for kind, job in recorder.events if job.id == job_id}


async def test_a_poll_does_not_judge_a_lease_that_ran_out_while_the_store_was_down() -> None:
    clock = FakeClock()
    store = OutageStore(clock, 10)
    middleware = AsyncJobsMiddleware(
        Starlette(), plugins=[Plugin(store)], store="outage", lease_seconds=5, clock=clock
    )
    await middleware.startup()
    orphan = processing(make_job(clock, owner=""), clock)
    orphan.lease_expires_at = clock() - 1  # its worker stopped renewing (or could not)
    await store.create(orphan)
    transport = httpx.ASGITransport(app=middleware)
    poll = f"/v1/async/audio/transcriptions/{orphan.id}"
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            store.down = True
            during = await client.get(poll)
            store.down = False
            just_back = await client.get(poll)
            clock.advance(4.9)
            still = await client.get(poll)
            clock.advance(0.2)  # a whole lease of answers since the outage: now it is judged
            judged = await client.get(poll)
    finally:
        await middleware.shutdown()
    assert during.status_code == 503 and during.headers["retry-after"], during.text
    assert during.json()["error"]["message"], during.text  # the contract's error shape
    assert just_back.status_code == 202 and still.status_code == 202, (just_back.text, still.text)
    assert judged.status_code == 200 and judged.json()["error"]["error"]["code"] == "worker_lost"


async def test_a_pending_write_is_retried_within_the_grace_then_given_up_and_logged() -> None:
    store = OutageStore(time.time, 10)
    recorder, app = Recorder(), make_app()
    middleware = AsyncJobsMiddleware(
        app, plugins=[Plugin(store), recorder], store="outage", lease_seconds=0.6, shutdown_grace=0.5
    )
    transport = httpx.ASGITransport(app=middleware)
    with structlog.testing.capture_logs() as logs:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            submitted = await client.post("/v1/async/embeddings", json={"model": "test/gate", "input": "x"})
            job_id = submitted.json()["id"]
            await recorder.wait("started", job_id)
            store.down = True
            app.state.gate.opened.set()
            await asyncio.wait_for(store.failed.wait(), 30)
            first = store.updates.count(("failed", JobStatus.COMPLETED))
            await asyncio.wait_for(middleware.shutdown(), 60)
    assert first == 1
    # once the grace was over, the write was tried once more before the outcome was given up
    assert store.updates.count(("failed", JobStatus.COMPLETED)) == 2, store.updates
    assert [entry["job_id"] for entry in _events(logs, "job.outcome_lost")] == [job_id]


def test_reachability_logs_each_change_once_and_waits_a_lease_after_an_outage() -> None:
    clock = FakeClock()
    reach = StoreReachability(clock, lease_seconds=3)
    assert reach.may_judge_leases()  # a process starts as if the store had always answered
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):
            reach.failed("refused")
        clock.advance(7)
        assert not reach.may_judge_leases() and not reach.reachable
        for _ in range(5):
            reach.answered()
        assert not reach.may_judge_leases()
        clock.advance(3)
        assert reach.may_judge_leases()
        reach.restarted()  # the store restarted without a failure seen here
        assert not reach.may_judge_leases()
        clock.advance(3)
        assert reach.may_judge_leases()
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("store.unreachable", "warning"),
        ("store.reachable", "info"),
        ("store.restarted", "info"),
    ]
    assert logs[1]["outage_seconds"] == 7
