"""The store kit's bound rules, part of :class:`~bifrost_async.testing.StoreContract`: concurrent
creates land, ``max_jobs`` refuses instead of evicting (``0``: no bound), and ``max_owner_jobs``
is one owner's atomic share."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from ..jobs import JobStatus
from ..store import JobStore, OwnerShareFull, StoreFactory, StoreFull
from .clock import FakeClock
from .fixtures import ContractFixtures
from .jobs import finished, make_job, processing


class BoundRules(ContractFixtures):
    """Rules of how many jobs a store holds, in all and per owner."""

    @pytest.mark.asyncio
    async def test_many_concurrent_creates(self, store: JobStore, clock: FakeClock) -> None:
        """Rule: concurrent creates (up to the bound) all land and read back."""
        jobs = [make_job(clock) for _ in range(min(self.max_jobs, 20))]
        await asyncio.gather(*(store.create(job) for job in jobs))
        got = await asyncio.gather(*(store.get(job.id) for job in jobs))
        assert got == jobs, "rule: every concurrent create is stored"

    @pytest.mark.asyncio
    async def test_bound_refuses_instead_of_evicting(self, store: JobStore, clock: FakeClock) -> None:
        """Rule: at ``max_jobs`` live jobs ``create`` raises ``StoreFull`` and evicts nothing;
        an expired job no longer counts."""
        if not self.bounded:
            pytest.skip("this store declares no bound on stored jobs")
        jobs = [make_job(clock) for _ in range(self.max_jobs)]
        for job in jobs:
            await store.create(job)
        with pytest.raises(StoreFull):
            await store.create(make_job(clock))
        assert [await store.get(job.id) for job in jobs] == jobs, "rule: the bound refuses, never evicts"
        first = processing(jobs[0], clock)
        await store.update(first, expect=(JobStatus.PENDING,))
        await store.update(finished(first, clock, result=None), expect=(JobStatus.PROCESSING,))
        clock.advance(jobs[0].ttl + 1)
        await store.create(make_job(clock))  # once a finished job expires, there is room again

    @pytest.mark.asyncio
    async def test_max_jobs_zero_means_no_bound(
        self, store_factory: StoreFactory, store_options: Mapping[str, Any], clock: FakeClock
    ) -> None:
        """Rule: ``StoreContext.max_jobs == 0`` means no bound: creates beyond the class's
        ``max_jobs`` all land."""
        async with self.started(store_factory, store_options, clock, max_jobs=0) as store:
            jobs = [make_job(clock) for _ in range(self.max_jobs + 3)]
            for job in jobs:
                await store.create(job)  # StoreFull here breaks the rule
            assert [await store.get(job.id) for job in jobs] == jobs, "rule: max_jobs=0 stores every job"

    @pytest.mark.asyncio
    async def test_owner_share_is_atomic_and_per_owner(
        self, store_factory: StoreFactory, store_options: Mapping[str, Any], clock: FakeClock
    ) -> None:
        """Rule: with ``max_owner_jobs`` N, one owner (``""``, anonymous callers, is one owner too)
        holds at most N live jobs, even when its creates race; beyond it ``create`` raises
        ``OwnerShareFull``; a deleted job frees its place at once, a finished one once it expires."""
        async with self.started(store_factory, store_options, clock, max_owner_jobs=3) as store:
            racing = [make_job(clock, owner="flood") for _ in range(6)]
            answers = await asyncio.gather(*(store.create(job) for job in racing), return_exceptions=True)
            assert sum(answer is None for answer in answers) == 3, (
                f"rule: the owner share is atomic: {sum(a is None for a in answers)} of 6 racing creates "
                "landed with a share of 3"
            )
            assert all(a is None or isinstance(a, OwnerShareFull) for a in answers), (
                f"rule: a create over the share raises OwnerShareFull, got {answers!r}"
            )
            assert await store.owner_jobs("flood") == 3, "rule: owner_jobs counts the owner's live jobs"
            for owner in ("", "someone-else"):
                for _ in range(3):
                    await store.create(make_job(clock, owner=owner))  # the share is per owner
                with pytest.raises(OwnerShareFull):
                    await store.create(make_job(clock, owner=owner))
            held = [job for job, answer in zip(racing, answers, strict=True) if answer is None]
            assert await store.delete(held[0].id), "rule: delete of a live job is True"
            assert await store.owner_jobs("flood") == 2, (
                "rule: a deleted job frees its place in the share at once"
            )
            await store.create(make_job(clock, owner="flood"))
            running = processing(held[1], clock)
            await store.update(running, expect=(JobStatus.PENDING,))
            await store.update(finished(running, clock, result=1), expect=(JobStatus.PROCESSING,))
            with pytest.raises(OwnerShareFull):  # a finished job still counts until it expires
                await store.create(make_job(clock, owner="flood"))
            clock.advance(held[1].ttl + 1)
            await store.create(make_job(clock, owner="flood"))  # expired: its place is free
