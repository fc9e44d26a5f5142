"""Test helpers for bifrost-async and its plugins.

:class:`StoreContract` is the store contract as pytest tests. Every store runs it: subclass it in
a test module and provide a ``store_factory`` fixture (and, if the store needs them,
``store_options``)::

    from bifrost_async.testing import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store_factory(self):
            return my_store_factory

The tests are marked for pytest-asyncio, so they run in its strict and auto modes alike.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
import pytest_asyncio

from .jobs import Job, JobStatus, new_job_id
from .store import JobStore, OwnerShareFull, StoreContext, StoreFactory, StoreFull
from .testing_webhooks import (
    WebhookRecordsContract as WebhookRecordsContract,  # re-exported: the store capability's contract
)


class FakeClock:
    """A clock for tests: starts at a real-looking epoch time and moves only when told."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_job(clock: FakeClock, **changes: Any) -> Job:
    """A pending transcription job with a fresh id; ``changes`` override fields."""
    fields: dict[str, Any] = {
        "id": new_job_id(),
        "request_id": new_job_id(),
        "request_type": "transcription",
        "status": JobStatus.PENDING,
        "created_at": clock(),
        "ttl": 60,
        "owner": "digest-of-someone",
        "extra_fields": {
            "provider": "openai",
            "model_requested": "whisper-1",
            "request_type": "transcription",
        },
    }
    fields.update(changes)
    return Job(**fields)


def finished(job: Job, clock: FakeClock, *, result: Any = None, error: dict[str, Any] | None = None) -> Job:
    """A copy of ``job``, completed (or failed when ``error`` is given) now, expiring after its ttl."""
    now = clock()
    return Job(
        **{
            **job.to_record(),
            "status": JobStatus.FAILED if error else JobStatus.COMPLETED,
            "status_code": 500 if error else 200,
            "result": None if error else result,
            "error": error,
            "completed_at": now,
            "expires_at": now + job.ttl,
            "lease_expires_at": None,
        }
    )


def processing(job: Job, clock: FakeClock) -> Job:
    now = clock()
    return Job(
        **{
            **job.to_record(),
            "status": JobStatus.PROCESSING,
            "started_at": now,
            "lease_expires_at": now + 30,
            "worker": "host:1",
        }
    )


class StoreContract:
    """The rules every :class:`~bifrost_async.store.JobStore` keeps, as tests."""

    #: Set to ``False`` in a subclass whose store has no bound on the number of jobs.
    bounded: bool = True
    #: The bound the contract's store is built with.
    max_jobs: int = 20

    @pytest.fixture
    def store_options(self) -> Mapping[str, Any]:
        return {}

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest_asyncio.fixture
    async def store(
        self, store_factory: StoreFactory, store_options: Mapping[str, Any], clock: FakeClock
    ) -> AsyncIterator[JobStore]:
        store = store_factory(StoreContext(clock=clock, max_jobs=self.max_jobs, options=store_options))
        await store.start()
        try:
            yield store
        finally:
            await store.close()

    @pytest.mark.asyncio
    async def test_create_then_get_round_trips_every_field(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock, created_at=clock() + 0.123456)
        await store.create(job)
        assert await store.get(job.id) == job
        done = finished(processing(job, clock), clock, result={"text": "héllo", "segments": [{"start": 0.5}]})
        assert await store.update(processing(job, clock), expect=(JobStatus.PENDING,))
        assert await store.update(done, expect=(JobStatus.PROCESSING,))
        assert await store.get(job.id) == done

    @pytest.mark.asyncio
    async def test_unknown_id_is_none(self, store: JobStore) -> None:
        assert await store.get(new_job_id()) is None

    @pytest.mark.asyncio
    async def test_returned_jobs_are_copies(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock)
        await store.create(job)
        job.status = JobStatus.FAILED
        got = await store.get(job.id)
        assert got is not None and got.status is JobStatus.PENDING
        got.status = JobStatus.COMPLETED
        again = await store.get(job.id)
        assert again is not None and again.status is JobStatus.PENDING

    @pytest.mark.asyncio
    async def test_update_requires_expected_status(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock)
        await store.create(job)
        done = finished(processing(job, clock), clock, result={"ok": True})
        assert not await store.update(done, expect=(JobStatus.PROCESSING,))
        assert (await store.get(job.id)) == job
        assert not await store.update(make_job(clock), expect=(JobStatus.PENDING,))  # unknown id

    @pytest.mark.asyncio
    async def test_status_never_moves_backwards(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock)
        await store.create(job)
        running = processing(job, clock)
        assert await store.update(running, expect=(JobStatus.PENDING,))
        assert not await store.update(job, expect=(JobStatus.PROCESSING,))  # back to pending
        done = finished(running, clock, result=[1, 2])
        assert await store.update(done, expect=(JobStatus.PROCESSING,))
        every = tuple(JobStatus)
        assert not await store.update(running, expect=every)
        assert not await store.update(finished(running, clock, error={"message": "x"}), expect=every)
        assert await store.get(job.id) == done

    @pytest.mark.asyncio
    async def test_lease_renewal_rewrites_same_status(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock)
        await store.create(job)
        running = processing(job, clock)
        assert await store.update(running, expect=(JobStatus.PENDING,))
        running.lease_expires_at = clock() + 99
        assert await store.update(running, expect=(JobStatus.PROCESSING,))
        got = await store.get(job.id)
        assert got is not None and got.lease_expires_at == running.lease_expires_at

    @pytest.mark.asyncio
    async def test_repeated_writes_succeed(self, store: JobStore, clock: FakeClock) -> None:
        """The idempotency rule: a write repeated after a lost reply reports success again."""
        job = make_job(clock, idempotency_claim="claim-r")
        assert await store.claim_idempotency_key("claim-r", "fp", job.id, 30) == (None, True)
        assert await store.claim_idempotency_key("claim-r", "fp", job.id, 30) == (None, True)
        await store.create(job)
        await store.create(job)  # the same record again: no "exists already"
        assert await store.claim_idempotency_key("claim-r", "fp", job.id, 30) == (None, True)
        running = processing(job, clock)
        for _ in range(2):  # start, then the retried start that finds its own write
            assert await store.update(running, expect=(JobStatus.PENDING,))
        running.lease_expires_at = clock() + 99
        for _ in range(2):  # a lease renewal, then its retry
            assert await store.update(running, expect=(JobStatus.PROCESSING,))
        done = finished(running, clock, result={"text": "x"})
        for _ in range(2):  # the outcome, then its retry
            assert await store.update(done, expect=(JobStatus.PROCESSING,))
        assert await store.get(job.id) == done
        # a different record is still refused: only the very same write repeats
        assert not await store.update(
            finished(running, clock, result={"other": 1}), expect=(JobStatus.PROCESSING,)
        )
        assert await store.delete(job.id)
        assert not await store.delete(job.id)  # repeated: gone either way
        assert not await store.update(done, expect=(JobStatus.PROCESSING,))  # gone: no resurrection

    @pytest.mark.asyncio
    async def test_racing_updates_only_one_wins(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock)
        await store.create(job)
        running = processing(job, clock)
        assert await store.update(running, expect=(JobStatus.PENDING,))
        contenders = [finished(running, clock, result={"n": n}) for n in range(8)]
        contenders += [finished(running, clock, error={"message": f"e{n}"}) for n in range(8)]
        wins = await asyncio.gather(*(store.update(c, expect=(JobStatus.PROCESSING,)) for c in contenders))
        assert sum(wins) == 1
        assert await store.get(job.id) == contenders[wins.index(True)]

    @pytest.mark.asyncio
    async def test_finished_job_expires_at_its_time(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock, ttl=30)
        await store.create(job)
        running = processing(job, clock)
        await store.update(running, expect=(JobStatus.PENDING,))
        done = finished(running, clock, result={"text": "x"})
        assert await store.update(done, expect=(JobStatus.PROCESSING,))
        clock.advance(29.9)
        assert await store.get(job.id) == done
        clock.advance(0.2)
        assert await store.get(job.id) is None
        assert not await store.update(done, expect=tuple(JobStatus))

    @pytest.mark.asyncio
    async def test_unfinished_jobs_do_not_expire(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock, ttl=1)
        await store.create(job)
        clock.advance(3600)
        assert await store.get(job.id) == job

    @pytest.mark.asyncio
    async def test_many_concurrent_creates(self, store: JobStore, clock: FakeClock) -> None:
        jobs = [make_job(clock) for _ in range(min(self.max_jobs, 20))]
        await asyncio.gather(*(store.create(job) for job in jobs))
        got = await asyncio.gather(*(store.get(job.id) for job in jobs))
        assert got == jobs

    @pytest.mark.asyncio
    async def test_bound_refuses_instead_of_evicting(self, store: JobStore, clock: FakeClock) -> None:
        if not self.bounded:
            pytest.skip("this store declares no bound on stored jobs")
        jobs = [make_job(clock) for _ in range(self.max_jobs)]
        for job in jobs:
            await store.create(job)
        with pytest.raises(StoreFull):
            await store.create(make_job(clock))
        assert [await store.get(job.id) for job in jobs] == jobs
        # once a finished job expires, there is room again
        first = processing(jobs[0], clock)
        await store.update(first, expect=(JobStatus.PENDING,))
        await store.update(finished(first, clock, result=None), expect=(JobStatus.PROCESSING,))
        clock.advance(jobs[0].ttl + 1)
        await store.create(make_job(clock))

    @pytest.mark.asyncio
    async def test_owner_share_is_atomic_and_per_owner(
        self, store_factory: StoreFactory, store_options: Mapping[str, Any], clock: FakeClock
    ) -> None:
        context = StoreContext(clock=clock, max_jobs=self.max_jobs, options=store_options, max_owner_jobs=3)
        store = store_factory(context)
        await store.start()
        try:
            # racing creates of one owner: exactly the share gets in, whoever comes first
            racing = [make_job(clock, owner="flood") for _ in range(6)]
            answers = await asyncio.gather(*(store.create(job) for job in racing), return_exceptions=True)
            assert sum(answer is None for answer in answers) == 3
            assert all(a is None or isinstance(a, OwnerShareFull) for a in answers)
            assert await store.owner_jobs("flood") == 3
            for owner in ("", "someone-else"):  # anonymous callers are one owner, with a share too
                for _ in range(3):
                    await store.create(make_job(clock, owner=owner))
                with pytest.raises(OwnerShareFull):
                    await store.create(make_job(clock, owner=owner))
            held = [job for job, answer in zip(racing, answers, strict=True) if answer is None]
            assert await store.delete(held[0].id)  # a deleted job frees its place at once
            assert await store.owner_jobs("flood") == 2
            await store.create(make_job(clock, owner="flood"))
            running = processing(held[1], clock)  # and so does a finished job once it expires
            await store.update(running, expect=(JobStatus.PENDING,))
            await store.update(finished(running, clock, result=1), expect=(JobStatus.PROCESSING,))
            with pytest.raises(OwnerShareFull):
                await store.create(make_job(clock, owner="flood"))
            clock.advance(held[1].ttl + 1)
            await store.create(make_job(clock, owner="flood"))
        finally:
            await store.close()

    # -- extensions: long-poll, delete, idempotency claims, listing ------------------------------

    @pytest.mark.asyncio
    async def test_wait_is_woken_by_a_terminal_update(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock)
        await store.create(job)
        running = processing(job, clock)
        waiter = asyncio.create_task(store.wait(job.id, 60))
        assert await store.update(running, expect=(JobStatus.PENDING,))
        running.lease_expires_at = clock() + 99  # a lease renewal is no reason to return
        assert await store.update(running, expect=(JobStatus.PROCESSING,))
        assert not waiter.done()
        done = finished(running, clock, result={"text": "x"})
        assert await store.update(done, expect=(JobStatus.PROCESSING,))
        # bounded far below the wait's own 60 s: only the notification can end it in time
        assert await asyncio.wait_for(waiter, 10) == done

    @pytest.mark.asyncio
    async def test_wait_returns_at_once_or_at_its_timeout(self, store: JobStore, clock: FakeClock) -> None:
        assert await asyncio.wait_for(store.wait(new_job_id(), 60), 10) is None
        job = make_job(clock)
        await store.create(job)
        assert await store.wait(job.id, 0.05) == job  # still pending when the timeout passes
        running = processing(job, clock)
        await store.update(running, expect=(JobStatus.PENDING,))
        done = finished(running, clock, error={"message": "x"})
        await store.update(done, expect=(JobStatus.PROCESSING,))
        assert await asyncio.wait_for(store.wait(job.id, 60), 10) == done

    @pytest.mark.asyncio
    async def test_delete_removes_and_wakes(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock)
        await store.create(job)
        waiter = asyncio.create_task(store.wait(job.id, 60))
        assert await store.delete(job.id)
        assert await asyncio.wait_for(waiter, 10) is None
        assert await store.get(job.id) is None
        assert not await store.delete(job.id)
        assert not await store.update(processing(job, clock), expect=(JobStatus.PENDING,))
        assert not await store.delete(new_job_id())

    @pytest.mark.asyncio
    async def test_delete_of_an_expired_job_is_false(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock, ttl=5)
        await store.create(job)
        running = processing(job, clock)
        await store.update(running, expect=(JobStatus.PENDING,))
        await store.update(finished(running, clock, result=1), expect=(JobStatus.PROCESSING,))
        clock.advance(6)
        assert not await store.delete(job.id)

    @pytest.mark.asyncio
    async def test_idempotency_claims(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock, ttl=10, idempotency_claim="claim-1")
        assert await store.claim_idempotency_key("claim-1", "fp", job.id, 30) == (None, True)
        await store.create(job)
        assert await store.claim_idempotency_key("claim-1", "fp", new_job_id(), 30) == (job.id, True)
        assert await store.claim_idempotency_key("claim-1", "other", new_job_id(), 30) == (job.id, False)
        assert await store.claim_idempotency_key("claim-2", "fp", new_job_id(), 30) == (None, True)
        clock.advance(3600)  # an unfinished job's claim does not lapse
        assert (await store.claim_idempotency_key("claim-1", "fp", new_job_id(), 30))[0] == job.id
        running = processing(job, clock)
        await store.update(running, expect=(JobStatus.PENDING,))
        await store.update(finished(running, clock, result=1), expect=(JobStatus.PROCESSING,))
        clock.advance(9)
        assert (await store.claim_idempotency_key("claim-1", "fp", new_job_id(), 30))[0] == job.id
        clock.advance(2)  # the job expired: so did its claim
        fresh = new_job_id()
        assert await store.claim_idempotency_key("claim-1", "fp2", fresh, 30) == (None, True)
        assert await store.claim_idempotency_key("claim-1", "fp2", new_job_id(), 30) == (fresh, True)

    @pytest.mark.asyncio
    async def test_claims_end_with_delete_or_lapse(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock, idempotency_claim="claim-d")
        await store.claim_idempotency_key("claim-d", "fp", job.id, 30)
        await store.create(job)
        assert await store.delete(job.id)
        assert await store.claim_idempotency_key("claim-d", "fp", "never-created", 30) == (None, True)
        clock.advance(29)
        assert (await store.claim_idempotency_key("claim-d", "fp", new_job_id(), 30))[0] == "never-created"
        clock.advance(2)  # its job was never created: the claim lapsed
        assert await store.claim_idempotency_key("claim-d", "fp", new_job_id(), 30) == (None, True)

    @pytest.mark.asyncio
    async def test_find_and_release_claims(self, store: JobStore, clock: FakeClock) -> None:
        job = make_job(clock, idempotency_claim="claim-r")
        assert await store.find_idempotency_key("claim-r") is None
        await store.claim_idempotency_key("claim-r", "fp", job.id, 30)
        assert await store.find_idempotency_key("claim-r") == (job.id, "fp")
        await store.release_idempotency_key("claim-r", new_job_id())  # not its claim: kept
        assert await store.find_idempotency_key("claim-r") == (job.id, "fp")
        await store.release_idempotency_key("claim-r", job.id)  # its submit was refused: free
        assert await store.find_idempotency_key("claim-r") is None
        assert await store.claim_idempotency_key("claim-r", "fp", job.id, 30) == (None, True)
        await store.create(job)
        await store.release_idempotency_key("claim-r", job.id)  # its job exists: kept
        assert await store.find_idempotency_key("claim-r") == (job.id, "fp")
        assert await store.delete(job.id)
        assert await store.find_idempotency_key("claim-r") is None

    @pytest.mark.asyncio
    async def test_racing_claims_only_one_wins(self, store: JobStore, clock: FakeClock) -> None:
        ids = [new_job_id() for _ in range(8)]
        answers = await asyncio.gather(*(store.claim_idempotency_key("race", "fp", i, 30) for i in ids))
        winners = [i for i, answer in zip(ids, answers, strict=True) if answer == (None, True)]
        assert len(winners) == 1
        assert all(answer in ((None, True), (winners[0], True)) for answer in answers)

    @pytest.mark.asyncio
    async def test_list_jobs_is_per_owner_newest_first_and_paged(
        self, store: JobStore, clock: FakeClock
    ) -> None:
        mine = []
        for n in range(5):
            job = make_job(clock, owner="me", created_at=clock() + n)
            mine.append(job)
            await store.create(job)
        await store.create(make_job(clock, owner="someone-else"))
        await store.create(make_job(clock, owner="me", request_type="speech"))
        running = processing(mine[1], clock)
        await store.update(running, expect=(JobStatus.PENDING,))
        newest_first = list(reversed(mine))
        newest_first[3] = running
        seen: list[Job] = []
        cursor: str | None = None
        for _ in range(3):
            page, cursor = await store.list_jobs("me", "transcription", cursor=cursor, limit=2)
            seen += page
            if cursor is None:
                break
        assert seen == newest_first and cursor is None
        processing_only, more = await store.list_jobs("me", "transcription", status=JobStatus.PROCESSING)
        assert processing_only == [running] and more is None
        assert await store.list_jobs("nobody", "transcription") == ([], None)
        with pytest.raises(ValueError):
            await store.list_jobs("me", "transcription", cursor="not a cursor!")

    @pytest.mark.asyncio
    async def test_list_jobs_leaves_out_expired_and_deleted(self, store: JobStore, clock: FakeClock) -> None:
        gone, kept, expiring = (make_job(clock, owner="me", ttl=5) for _ in range(3))
        for job in (gone, kept, expiring):
            await store.create(job)
        await store.delete(gone.id)
        running = processing(expiring, clock)
        await store.update(running, expect=(JobStatus.PENDING,))
        await store.update(finished(running, clock, result=1), expect=(JobStatus.PROCESSING,))
        clock.advance(6)
        assert await store.list_jobs("me", "transcription") == ([kept], None)

    @pytest.mark.asyncio
    async def test_list_jobs_refuses_crafted_cursors(self, store: JobStore, clock: FakeClock) -> None:
        await store.create(make_job(clock))
        crafted = [f"nan|{new_job_id()}", f"inf|{new_job_id()}", "1.5|not-a-job-id", "no separator"]
        for raw in crafted:
            cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
            with pytest.raises(ValueError):
                await store.list_jobs("digest-of-someone", "transcription", cursor=cursor)
        with pytest.raises(ValueError):
            await store.list_jobs("digest-of-someone", "transcription", cursor="!!!")
