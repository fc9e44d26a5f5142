"""The store kit's extension rules, part of :class:`~bifrost_async.testing.StoreContract`: the
long-poll ``wait`` and its wake-ups, ``delete``, idempotency claims and ``list_jobs``."""

from __future__ import annotations

import asyncio
import base64

import pytest

from ..jobs import Job, JobStatus, new_job_id
from ..store import JobStore
from .checks import _let_park, _one_claim_won, _within
from .clock import FakeClock
from .fixtures import ContractFixtures
from .jobs import finished, make_job, processing


class ExtensionRules(ContractFixtures):
    """Rules of the store's extensions: long-poll, delete, idempotency claims, listing."""

    # -- extensions: long-poll, delete, idempotency claims, listing ------------------------------

    @pytest.mark.asyncio
    async def test_wait_is_woken_by_a_terminal_update(self, store: JobStore, clock: FakeClock) -> None:
        """Rule: wake-ups: a ``wait`` returns the job soon after a terminal update, long before its
        own timeout, and a non-terminal update (a lease renewal) does not end it."""
        job = make_job(clock)
        await store.create(job)
        running = processing(job, clock)
        waiter = asyncio.create_task(store.wait(job.id, 60))
        await _let_park(store, job.id)
        assert await store.update(running, expect=(JobStatus.PENDING,)), "rule: pending -> processing"
        running.lease_expires_at = clock() + 99
        assert await store.update(running, expect=(JobStatus.PROCESSING,)), "rule: a lease renewal lands"
        assert not waiter.done(), "rule: wait returns only when the job is terminal or deleted"
        done = finished(running, clock, result={"text": "x"})
        assert await store.update(done, expect=(JobStatus.PROCESSING,)), "rule: processing -> completed"
        assert await _within(waiter, self.wake_deadline, "a terminal update") == done, (
            "rule: wake-ups: wait returns the terminal job"
        )

    @pytest.mark.asyncio
    async def test_wait_returns_at_once_or_at_its_timeout(self, store: JobStore, clock: FakeClock) -> None:
        """Rule: ``wait`` returns at once for an unknown or terminal job, and the unfinished job
        as stored when its timeout passes (never raises at the timeout)."""
        assert await _within(store.wait(new_job_id(), 60), self.wake_deadline, "an unknown id") is None, (
            "rule: wait of an unknown id is None at once"
        )
        job = make_job(clock)
        await store.create(job)
        assert await store.wait(job.id, 0.05) == job, "rule: wait returns the unfinished job at its timeout"
        running = processing(job, clock)
        await store.update(running, expect=(JobStatus.PENDING,))
        done = finished(running, clock, error={"message": "x"})
        await store.update(done, expect=(JobStatus.PROCESSING,))
        assert await _within(store.wait(job.id, 60), self.wake_deadline, "a terminal job") == done, (
            "rule: wait of a terminal job returns it at once"
        )

    @pytest.mark.asyncio
    async def test_delete_removes_and_wakes(self, store: JobStore, clock: FakeClock) -> None:
        """Rule: ``delete`` removes a job whatever its status and wakes its waiters (``None``);
        a deleted job is not found, not deleted again, not updated."""
        job = make_job(clock)
        await store.create(job)
        waiter = asyncio.create_task(store.wait(job.id, 60))
        await _let_park(store, job.id)
        assert await store.delete(job.id), "rule: delete of a live job is True"
        assert await _within(waiter, self.wake_deadline, "a delete") is None, (
            "rule: wake-ups: a delete ends a wait with None"
        )
        assert await store.get(job.id) is None, "rule: a deleted job is gone"
        assert not await store.delete(job.id), "rule: a repeated delete is False"
        assert not await store.update(processing(job, clock), expect=(JobStatus.PENDING,)), (
            "rule: delete is atomic: a later update finds no job"
        )
        assert not await store.delete(new_job_id()), "rule: delete of an unknown id is False"

    @pytest.mark.asyncio
    async def test_delete_of_an_expired_job_is_false(self, store: JobStore, clock: FakeClock) -> None:
        """Rule: an expired job is as gone as an unknown one: its delete is ``False``."""
        job = make_job(clock, ttl=5)
        await store.create(job)
        running = processing(job, clock)
        await store.update(running, expect=(JobStatus.PENDING,))
        await store.update(finished(running, clock, result=1), expect=(JobStatus.PROCESSING,))
        clock.advance(6)
        assert not await store.delete(job.id), "rule: delete of an expired job is False"

    @pytest.mark.asyncio
    async def test_idempotency_claims(self, store: JobStore, clock: FakeClock) -> None:
        """Rule: a claim is granted once; later claims get ``(its job id, same fingerprint?)``;
        it lives while its job lives (an unfinished job's claim never lapses) and expires with it."""
        job = make_job(clock, ttl=10, idempotency_claim="claim-1")
        assert await store.claim_idempotency_key("claim-1", "fp", job.id, 30) == (None, True), (
            "rule: a free claim is granted"
        )
        await store.create(job)
        assert await store.claim_idempotency_key("claim-1", "fp", new_job_id(), 30) == (job.id, True), (
            "rule: a held claim answers its job id and whether the fingerprint matches (it does)"
        )
        assert await store.claim_idempotency_key("claim-1", "other", new_job_id(), 30) == (job.id, False), (
            "rule: a held claim answers its job id and whether the fingerprint matches (it does not)"
        )
        assert await store.claim_idempotency_key("claim-2", "fp", new_job_id(), 30) == (None, True), (
            "rule: claims are independent of each other"
        )
        clock.advance(3600)
        assert (await store.claim_idempotency_key("claim-1", "fp", new_job_id(), 30))[0] == job.id, (
            "rule: a created job's claim lives while the job does, past its ttl argument"
        )
        running = processing(job, clock)
        await store.update(running, expect=(JobStatus.PENDING,))
        await store.update(finished(running, clock, result=1), expect=(JobStatus.PROCESSING,))
        clock.advance(9)
        assert (await store.claim_idempotency_key("claim-1", "fp", new_job_id(), 30))[0] == job.id, (
            "rule: a finished job's claim lives until the job expires"
        )
        clock.advance(2)
        fresh = new_job_id()
        assert await store.claim_idempotency_key("claim-1", "fp2", fresh, 30) == (None, True), (
            "rule: a claim expires with its job"
        )
        assert await store.claim_idempotency_key("claim-1", "fp2", new_job_id(), 30) == (fresh, True), (
            "rule: the new claim is held"
        )

    @pytest.mark.asyncio
    async def test_claims_end_with_delete_or_lapse(self, store: JobStore, clock: FakeClock) -> None:
        """Rule: ``delete`` removes the job's claim; a claim whose job is never created lapses
        after its ``ttl`` seconds by the clock."""
        job = make_job(clock, idempotency_claim="claim-d")
        await store.claim_idempotency_key("claim-d", "fp", job.id, 30)
        await store.create(job)
        assert await store.delete(job.id), "rule: delete of a live job is True"
        assert await store.claim_idempotency_key("claim-d", "fp", "never-created", 30) == (None, True), (
            "rule: delete removes the job's idempotency claim"
        )
        clock.advance(29)
        assert (await store.claim_idempotency_key("claim-d", "fp", new_job_id(), 30))[0] == "never-created", (
            "rule: a claim without a job lives for its ttl"
        )
        clock.advance(2)
        assert await store.claim_idempotency_key("claim-d", "fp", new_job_id(), 30) == (None, True), (
            "rule: a claim whose job was never created lapses after its ttl"
        )

    @pytest.mark.asyncio
    async def test_find_and_release_claims(self, store: JobStore, clock: FakeClock) -> None:
        """Rule: ``find_idempotency_key`` reads a live claim and changes nothing;
        ``release_idempotency_key`` drops a claim only for its own job, and only if that job was
        never created."""
        job = make_job(clock, idempotency_claim="claim-r")
        assert await store.find_idempotency_key("claim-r") is None, "rule: find of a free claim is None"
        await store.claim_idempotency_key("claim-r", "fp", job.id, 30)
        assert await store.find_idempotency_key("claim-r") == (job.id, "fp"), (
            "rule: find reads the live claim"
        )
        await store.release_idempotency_key("claim-r", new_job_id())
        assert await store.find_idempotency_key("claim-r") == (job.id, "fp"), (
            "rule: release for another job id keeps the claim"
        )
        await store.release_idempotency_key("claim-r", job.id)
        assert await store.find_idempotency_key("claim-r") is None, (
            "rule: release frees the claim of a job never created (its submit was refused)"
        )
        assert await store.claim_idempotency_key("claim-r", "fp", job.id, 30) == (None, True), (
            "rule: released: free again"
        )
        await store.create(job)
        await store.release_idempotency_key("claim-r", job.id)
        assert await store.find_idempotency_key("claim-r") == (job.id, "fp"), (
            "rule: release keeps the claim of a job that was created"
        )
        assert await store.delete(job.id), "rule: delete of a live job is True"
        assert await store.find_idempotency_key("claim-r") is None, "rule: delete removes the job's claim"

    @pytest.mark.asyncio
    async def test_racing_claims_only_one_wins(self, store: JobStore, clock: FakeClock) -> None:
        """Rule: claims are atomic: of racing claims of one key, exactly one is granted; the others
        see the winner's job id."""
        ids = [new_job_id() for _ in range(8)]
        answers = await asyncio.gather(*(store.claim_idempotency_key("race", "fp", i, 30) for i in ids))
        _one_claim_won(ids, answers)

    @pytest.mark.asyncio
    async def test_list_jobs_is_per_owner_newest_first_and_paged(
        self, store: JobStore, clock: FakeClock
    ) -> None:
        """Rule: ``list_jobs`` gives one owner's jobs of one type, newest first (``created_at``,
        then ``id``), optionally of one status, in pages joined by cursors, ``None`` after the
        last; a cursor it did not make raises ``ValueError``."""
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
        for _ in range(5):  # a store may return short pages: allow a few more than 3
            page, cursor = await store.list_jobs("me", "transcription", cursor=cursor, limit=2)
            assert len(page) <= 2, "rule: list_jobs returns at most limit jobs"
            seen += page
            if cursor is None:
                break
        assert seen == newest_first and cursor is None, (
            "rule: list_jobs pages through the owner's jobs of the type, newest first, each once"
        )
        processing_only, more = await store.list_jobs("me", "transcription", status=JobStatus.PROCESSING)
        assert processing_only == [running] and more is None, "rule: list_jobs filters by status"
        assert await store.list_jobs("nobody", "transcription") == ([], None), (
            "rule: list_jobs of an owner with no jobs is ([], None)"
        )
        with pytest.raises(ValueError):
            await store.list_jobs("me", "transcription", cursor="not a cursor!")

    @pytest.mark.asyncio
    async def test_list_jobs_leaves_out_expired_and_deleted(self, store: JobStore, clock: FakeClock) -> None:
        """Rule: ``list_jobs`` lists live jobs only: not deleted ones, not expired ones."""
        gone, kept, expiring = (make_job(clock, owner="me", ttl=5) for _ in range(3))
        for job in (gone, kept, expiring):
            await store.create(job)
        await store.delete(gone.id)
        running = processing(expiring, clock)
        await store.update(running, expect=(JobStatus.PENDING,))
        await store.update(finished(running, clock, result=1), expect=(JobStatus.PROCESSING,))
        clock.advance(6)
        assert await store.list_jobs("me", "transcription") == ([kept], None), (
            "rule: list_jobs leaves out deleted and expired jobs"
        )

    @pytest.mark.asyncio
    async def test_list_jobs_refuses_crafted_cursors(self, store: JobStore, clock: FakeClock) -> None:
        """Rule: a cursor is opaque and checked: a crafted one (``nan``/``inf`` time, a non-job
        id, no separator, not base64) raises ``ValueError`` (the service answers 400)."""
        await store.create(make_job(clock))
        crafted = [f"nan|{new_job_id()}", f"inf|{new_job_id()}", "1.5|not-a-job-id", "no separator"]
        for raw in crafted:
            cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
            with pytest.raises(ValueError):
                await store.list_jobs("digest-of-someone", "transcription", cursor=cursor)
        with pytest.raises(ValueError):
            await store.list_jobs("digest-of-someone", "transcription", cursor="!!!")
