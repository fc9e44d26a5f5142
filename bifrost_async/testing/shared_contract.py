"""The contract of a store registered ``shared=True``, as pytest tests:
:class:`SharedStoreContract`, the store contract plus its rules across two instances (two
processes) of the store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
import pytest_asyncio

from ..jobs import JobStatus, new_job_id
from ..store import JobStore, OwnerShareFull, StoreFactory, StoreFull
from .checks import _let_park, _one_claim_won, _within
from .clock import FakeClock
from .contract import StoreContract
from .jobs import finished, make_job, processing


class SharedStoreContract(StoreContract):
    """The contract of a store registered ``shared=True``: :class:`StoreContract`, plus the rules
    across processes, checked with two instances of the store (``store`` and ``other_store``)
    built from the same factory, options and clock, each standing for a process.

    Both instances must reach the same place (``store_options`` naming one file, database or
    server), each with its own connections and its own notification listener, as two processes
    would have. A store that wakes only its own instance's waiters, or keeps its bound per
    instance, fails here. Same settings as :class:`StoreContract`.
    """

    @pytest_asyncio.fixture
    async def other_store(
        self, store_factory: StoreFactory, store_options: Mapping[str, Any], clock: FakeClock
    ) -> AsyncIterator[JobStore]:
        """A second instance of the store (another process), started beside ``store``."""
        async with self.started(store_factory, store_options, clock) as other:
            yield other

    @pytest.mark.asyncio
    async def test_writes_on_one_are_seen_on_the_other(
        self, store: JobStore, other_store: JobStore, clock: FakeClock
    ) -> None:
        """Rule: shared: a job created, updated or claimed through one instance reads the same
        through the other (get, list_jobs, find_idempotency_key), both ways."""
        rule = "rule: shared: "
        job = make_job(clock, owner="me", idempotency_claim="claim-x")
        assert await store.claim_idempotency_key("claim-x", "fp", job.id, 30) == (None, True), (
            "rule: a free claim is granted"
        )
        await store.create(job)
        assert await other_store.get(job.id) == job, rule + "a create on A is seen by get on B"
        assert await other_store.find_idempotency_key("claim-x") == (job.id, "fp"), (
            rule + "a claim made on A is seen on B"
        )
        assert await other_store.list_jobs("me", "transcription") == ([job], None), (
            rule + "list_jobs on B lists A's job"
        )
        running = processing(job, clock)
        assert await other_store.update(running, expect=(JobStatus.PENDING,)), rule + "B updates A's job"
        assert await store.get(job.id) == running, rule + "an update on B is seen by get on A"
        assert not await store.update(job, expect=(JobStatus.PROCESSING,)), (
            "rule: status never moves backwards, across instances too"
        )

    @pytest.mark.asyncio
    async def test_racing_updates_from_both_only_one_wins(
        self, store: JobStore, other_store: JobStore, clock: FakeClock
    ) -> None:
        """Rule: update is a compare-and-set across processes: of updates racing from both
        instances with the same ``expect``, exactly one lands."""
        job = make_job(clock)
        await store.create(job)
        running = processing(job, clock)
        assert await store.update(running, expect=(JobStatus.PENDING,)), "rule: pending -> processing"
        contenders = [finished(running, clock, result={"n": n}) for n in range(8)]
        wins = await asyncio.gather(
            *(
                (store if n % 2 else other_store).update(c, expect=(JobStatus.PROCESSING,))
                for n, c in enumerate(contenders)
            )
        )
        assert sum(wins) == 1, f"rule: update is atomic across processes: {sum(wins)} of 8 landed, not 1"
        winner = contenders[wins.index(True)]
        assert await store.get(job.id) == winner and await other_store.get(job.id) == winner, (
            "rule: shared: both instances read the winner's record"
        )

    @pytest.mark.asyncio
    async def test_wait_on_one_is_woken_by_a_terminal_update_on_the_other(
        self, store: JobStore, other_store: JobStore, clock: FakeClock
    ) -> None:
        """Rule: wake-ups cross processes: a ``wait`` on B returns soon after a terminal update on
        A (within ``wake_deadline``, its own timeout being 60 s); a lease renewal does not end it."""
        job = make_job(clock)
        await store.create(job)
        running = processing(job, clock)
        waiter = asyncio.create_task(other_store.wait(job.id, 60))
        assert await store.update(running, expect=(JobStatus.PENDING,)), "rule: pending -> processing"
        running.lease_expires_at = clock() + 99
        assert await store.update(running, expect=(JobStatus.PROCESSING,)), "rule: a lease renewal lands"
        await _let_park(other_store, job.id)
        assert not waiter.done(), "rule: wait returns only when the job is terminal or deleted"
        done = finished(running, clock, result={"text": "x"})
        assert await store.update(done, expect=(JobStatus.PROCESSING,)), "rule: processing -> completed"
        assert await _within(waiter, self.wake_deadline, "a terminal update on the other instance") == done, (
            "rule: wake-ups cross processes: B's wait returns A's terminal job"
        )

    @pytest.mark.asyncio
    async def test_delete_on_one_wakes_and_is_seen_by_the_other(
        self, store: JobStore, other_store: JobStore, clock: FakeClock
    ) -> None:
        """Rule: a cancel (delete) on A ends B's waits with ``None`` soon, and B no longer finds,
        updates, deletes or lists the job, nor sees its claim."""
        job = make_job(clock, owner="me", idempotency_claim="claim-c")
        await store.claim_idempotency_key("claim-c", "fp", job.id, 30)
        await store.create(job)
        waiter = asyncio.create_task(other_store.wait(job.id, 60))
        await _let_park(other_store, job.id)
        assert await store.delete(job.id), "rule: delete of a live job is True"
        assert await _within(waiter, self.wake_deadline, "a delete on the other instance") is None, (
            "rule: wake-ups cross processes: a delete on A ends B's wait with None"
        )
        rule = "rule: shared: a delete on A is seen by B: "
        assert await other_store.get(job.id) is None, rule + "get is None"
        assert await _within(other_store.wait(job.id, 60), self.wake_deadline, "a deleted job") is None, (
            rule + "wait is None at once"
        )
        assert not await other_store.update(processing(job, clock), expect=(JobStatus.PENDING,)), (
            rule + "update finds no job"
        )
        assert not await other_store.delete(job.id), rule + "a second delete is False"
        assert await other_store.find_idempotency_key("claim-c") is None, rule + "its claim is gone"
        assert await other_store.list_jobs("me", "transcription") == ([], None), rule + "it is not listed"

    @pytest.mark.asyncio
    async def test_expiry_and_released_claims_are_seen_on_the_other(
        self, store: JobStore, other_store: JobStore, clock: FakeClock
    ) -> None:
        """Rule: shared: a job finished on A expires on B at its ``expires_at`` (one clock), and a
        claim released on A (its submit refused) is free on B at once."""
        job = make_job(clock, owner="me", ttl=5)
        await store.create(job)
        running = processing(job, clock)
        assert await store.update(running, expect=(JobStatus.PENDING,)), "rule: pending -> processing"
        done = finished(running, clock, result=1)
        assert await store.update(done, expect=(JobStatus.PROCESSING,)), "rule: processing -> completed"
        assert await other_store.get(job.id) == done, "rule: shared: A's outcome is read on B"
        clock.advance(6)
        assert await other_store.get(job.id) is None, "rule: shared: a job expired by the clock is gone on B"
        assert await other_store.list_jobs("me", "transcription") == ([], None), (
            "rule: shared: an expired job is not listed on B"
        )
        refused = new_job_id()
        assert await store.claim_idempotency_key("claim-f", "fp", refused, 30) == (None, True), (
            "rule: a free claim is granted"
        )
        assert await other_store.claim_idempotency_key("claim-f", "fp", new_job_id(), 30) == (
            refused,
            True,
        ), "rule: shared: a claim held on A answers its job id on B"
        await store.release_idempotency_key("claim-f", refused)
        assert await other_store.claim_idempotency_key("claim-f", "fp", new_job_id(), 30) == (None, True), (
            "rule: shared: a claim released on A is free on B"
        )

    @pytest.mark.asyncio
    async def test_bound_holds_across_both(
        self, store: JobStore, other_store: JobStore, clock: FakeClock
    ) -> None:
        """Rule: the bound is shared: creates racing from both instances never store more than
        ``max_jobs`` live jobs together; the rest raise ``StoreFull``."""
        if not self.bounded:
            pytest.skip("this store declares no bound on stored jobs")
        jobs = [make_job(clock) for _ in range(self.max_jobs + 6)]
        answers = await asyncio.gather(
            *((store if n % 2 else other_store).create(job) for n, job in enumerate(jobs)),
            return_exceptions=True,
        )
        landed = sum(answer is None for answer in answers)
        assert landed == self.max_jobs, (
            f"rule: the bound is shared and atomic: {landed} racing creates from two instances landed, "
            f"bound {self.max_jobs}"
        )
        assert all(a is None or isinstance(a, StoreFull) for a in answers), (
            f"rule: a create over the bound raises StoreFull, got {[a for a in answers if a is not None]!r}"
        )

    @pytest.mark.asyncio
    async def test_owner_share_holds_across_both(
        self, store_factory: StoreFactory, store_options: Mapping[str, Any], clock: FakeClock
    ) -> None:
        """Rule: the per-owner share is shared: one owner's creates racing from both instances
        never pass ``max_owner_jobs`` together; ``owner_jobs`` on either counts them all."""
        async with (
            self.started(store_factory, store_options, clock, max_owner_jobs=3) as one,
            self.started(store_factory, store_options, clock, max_owner_jobs=3) as two,
        ):
            racing = [make_job(clock, owner="flood") for _ in range(8)]
            answers = await asyncio.gather(
                *((one if n % 2 else two).create(job) for n, job in enumerate(racing)),
                return_exceptions=True,
            )
            landed = sum(answer is None for answer in answers)
            assert landed == 3, (
                f"rule: the owner share is shared and atomic: {landed} racing creates from two instances "
                "landed with a share of 3"
            )
            assert all(a is None or isinstance(a, OwnerShareFull) for a in answers), (
                f"rule: a create over the share raises OwnerShareFull, got {answers!r}"
            )
            assert await one.owner_jobs("flood") == 3 and await two.owner_jobs("flood") == 3, (
                "rule: shared: owner_jobs on either instance counts the owner's jobs on both"
            )

    @pytest.mark.asyncio
    async def test_racing_claims_from_both_only_one_wins(
        self, store: JobStore, other_store: JobStore, clock: FakeClock
    ) -> None:
        """Rule: claims are atomic across processes: of claims of one key racing from both
        instances, exactly one is granted; the others see the winner's job id."""
        ids = [new_job_id() for _ in range(8)]
        answers = await asyncio.gather(
            *(
                (store if n % 2 else other_store).claim_idempotency_key("race", "fp", i, 30)
                for n, i in enumerate(ids)
            )
        )
        _one_claim_won(ids, answers)
