"""Test helpers for bifrost-async and its plugins: the store kit.

:class:`StoreContract` is the store contract (:class:`~bifrost_async.store.JobStore`) as pytest
tests; every store runs it. Subclass it in a test module and provide a ``store_factory`` fixture
(and, if the store needs them, ``store_options``)::

    from bifrost_async.testing import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store_factory(self):
            return my_store_factory

        @pytest.fixture
        def store_options(self, tmp_path):
            return {"path": str(tmp_path / "jobs.db")}  # strings, as flags and env give them

A store registered ``shared=True`` (one set of jobs for every process pointed at the same place)
subclasses :class:`SharedStoreContract` instead: the same tests, plus tests across two instances
of the store built from the same factory, options and clock, standing for two processes.

Each test's docstring states the rule it checks, and each assertion's message names that rule
(``rule: update is a compare-and-set: ...``), so a failure says what the store got wrong. Class
attributes tune the kit for a store (see :class:`StoreContract`). docs/STORES.md explains the rules
and the kit for store authors. The tests are marked for pytest-asyncio, so they run in its strict
and auto modes alike.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
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
    return dataclasses.replace(
        job,
        status=JobStatus.FAILED if error else JobStatus.COMPLETED,
        status_code=500 if error else 200,
        result=None if error else result,
        error=error,
        completed_at=now,
        expires_at=now + job.ttl,
        lease_expires_at=None,
    )


def processing(job: Job, clock: FakeClock) -> Job:
    """A copy of ``job``, taken by a worker now (``processing``, a 30 s lease)."""
    now = clock()
    return dataclasses.replace(
        job, status=JobStatus.PROCESSING, started_at=now, lease_expires_at=now + 30, worker="host:1"
    )


class StoreContract:
    """The rules every :class:`~bifrost_async.store.JobStore` keeps, as tests.

    Provide a ``store_factory`` fixture (the factory you register) and, if your store needs them,
    ``store_options`` (a mapping as ``StoreContext.options`` carries it; strings are what flags,
    the environment and TOML give). The ``clock`` fixture is a :class:`FakeClock` the store must
    judge expiry by. Settings, as class attributes:
    """

    #: Whether the store refuses (:class:`~bifrost_async.store.StoreFull`) a create beyond
    #: ``max_jobs`` live jobs. Set ``False`` only for a store with no bound at all; then the
    #: bound's tests are skipped.
    bounded: bool = True
    #: The bound (``StoreContext.max_jobs``) the ``store`` fixture is built with; at least 4.
    #: The bound tests fill it, so keep it small for a slow store.
    max_jobs: int = 20
    #: Seconds a :meth:`~bifrost_async.store.JobStore.wait` may take to return once the job it
    #: waits on ended or was deleted. The waits themselves are given 60 s, so only the store's
    #: notification (or a poll at least this often) ends them in time. Generous on purpose:
    #: the kit never asserts timing, only that the wake-up came.
    wake_deadline: float = 10.0

    @pytest.fixture
    def store_options(self) -> Mapping[str, Any]:
        """The store's options; override for a store that needs some."""
        return {}

    @pytest.fixture
    def clock(self) -> FakeClock:
        """The clock every store of a test is built with."""
        return FakeClock()

    @contextlib.asynccontextmanager
    async def started(
        self,
        store_factory: StoreFactory,
        store_options: Mapping[str, Any],
        clock: FakeClock,
        *,
        max_jobs: int | None = None,
        max_owner_jobs: int = 0,
    ) -> AsyncIterator[JobStore]:
        """A store from ``store_factory``, started, closed afterwards (``max_jobs`` defaults to
        the class setting). Tests that need another bound or a per-owner share build theirs here."""
        bound = self.max_jobs if max_jobs is None else max_jobs
        context = StoreContext(
            clock=clock, max_jobs=bound, options=store_options, max_owner_jobs=max_owner_jobs
        )
        store = store_factory(context)
        await store.start()
        try:
            yield store
        finally:
            await store.close()

    @pytest_asyncio.fixture
    async def store(
        self, store_factory: StoreFactory, store_options: Mapping[str, Any], clock: FakeClock
    ) -> AsyncIterator[JobStore]:
        """The store under test, started (bound ``max_jobs``, no per-owner share)."""
        async with self.started(store_factory, store_options, clock) as store:
            yield store

    @pytest.mark.asyncio
    async def test_create_then_get_round_trips_every_field(self, store: JobStore, clock: FakeClock) -> None:
        """Rule: a stored job reads back equal, every field (a float timestamp to the microsecond,
        a result with nested JSON and non-ASCII text), after create and after updates."""
        job = make_job(clock, created_at=clock() + 0.123456)
        await store.create(job)
        assert await store.get(job.id) == job, "rule: get returns the job exactly as created"
        done = finished(processing(job, clock), clock, result={"text": "héllo", "segments": [{"start": 0.5}]})
        assert await store.update(processing(job, clock), expect=(JobStatus.PENDING,)), (
            "rule: update pending -> processing succeeds when pending is expected"
        )
        assert await store.update(done, expect=(JobStatus.PROCESSING,)), (
            "rule: update processing -> completed succeeds when processing is expected"
        )
        assert await store.get(job.id) == done, "rule: get returns the job exactly as last updated"

    @pytest.mark.asyncio
    async def test_unknown_id_is_none(self, store: JobStore) -> None:
        """Rule: ``get`` of an id never stored is ``None``, not an error."""
        assert await store.get(new_job_id()) is None, "rule: get of an unknown id is None"

    @pytest.mark.asyncio
    async def test_create_of_a_held_id_with_another_record_is_value_error(
        self, store: JobStore, clock: FakeClock
    ) -> None:
        """Rule: ``create`` of an id the store holds with another record raises ``ValueError``
        and leaves the stored job alone (the same record again is a repeated write: success)."""
        job = make_job(clock)
        await store.create(job)
        impostor = make_job(clock, id=job.id, owner="someone-else")
        with pytest.raises(ValueError):
            await store.create(impostor)
        assert await store.get(job.id) == job, "rule: a refused create changes nothing"

    @pytest.mark.asyncio
    async def test_returned_jobs_are_copies(self, store: JobStore, clock: FakeClock) -> None:
        """Rule: the store keeps its own copy: changing the job given to ``create`` or returned by
        ``get`` changes nothing stored."""
        job = make_job(clock)
        await store.create(job)
        job.status = JobStatus.FAILED
        got = await store.get(job.id)
        assert got is not None and got.status is JobStatus.PENDING, (
            "rule: changing the created object does not change the stored job"
        )
        got.status = JobStatus.COMPLETED
        again = await store.get(job.id)
        assert again is not None and again.status is JobStatus.PENDING, (
            "rule: changing a returned job does not change the stored job"
        )

    @pytest.mark.asyncio
    async def test_update_requires_expected_status(self, store: JobStore, clock: FakeClock) -> None:
        """Rule: update is a compare-and-set: it lands only if the stored status is in ``expect``;
        otherwise (or for an unknown id) it returns ``False`` and changes nothing."""
        job = make_job(clock)
        await store.create(job)
        done = finished(processing(job, clock), clock, result={"ok": True})
        assert not await store.update(done, expect=(JobStatus.PROCESSING,)), (
            "rule: update is a compare-and-set: a pending job is not updated when processing is expected"
        )
        assert (await store.get(job.id)) == job, "rule: a refused update changes nothing"
        assert not await store.update(make_job(clock), expect=(JobStatus.PENDING,)), (
            "rule: update of an unknown id is False"
        )

    @pytest.mark.asyncio
    async def test_status_never_moves_backwards(self, store: JobStore, clock: FakeClock) -> None:
        """Rule: status moves only forward (pending -> processing -> completed | failed), whatever
        ``expect`` allows; a terminal job is never rewritten."""
        job = make_job(clock)
        await store.create(job)
        running = processing(job, clock)
        assert await store.update(running, expect=(JobStatus.PENDING,)), "rule: pending -> processing"
        assert not await store.update(job, expect=(JobStatus.PROCESSING,)), (
            "rule: status never moves backwards: processing -> pending is refused"
        )
        done = finished(running, clock, result=[1, 2])
        assert await store.update(done, expect=(JobStatus.PROCESSING,)), "rule: processing -> completed"
        every = tuple(JobStatus)
        assert not await store.update(running, expect=every), (
            "rule: status never moves backwards: completed -> processing is refused"
        )
        assert not await store.update(finished(running, clock, error={"message": "x"}), expect=every), (
            "rule: a terminal job is never rewritten: completed -> failed is refused"
        )
        assert await store.get(job.id) == done, "rule: refused updates change nothing"

    @pytest.mark.asyncio
    async def test_lease_renewal_rewrites_same_status(self, store: JobStore, clock: FakeClock) -> None:
        """Rule: an update to the same unfinished status (a worker renewing its lease) lands when
        that status is expected."""
        job = make_job(clock)
        await store.create(job)
        running = processing(job, clock)
        assert await store.update(running, expect=(JobStatus.PENDING,)), "rule: pending -> processing"
        running.lease_expires_at = clock() + 99
        assert await store.update(running, expect=(JobStatus.PROCESSING,)), (
            "rule: processing -> processing (a lease renewal) lands"
        )
        got = await store.get(job.id)
        assert got is not None and got.lease_expires_at == running.lease_expires_at, (
            "rule: a lease renewal is stored"
        )

    @pytest.mark.asyncio
    async def test_repeated_writes_succeed(self, store: JobStore, clock: FakeClock) -> None:
        """Rule: every write is idempotent: a write repeated after a lost reply reports the same
        success as the first; a different record is still refused; a repeated delete is False."""
        rule = "rule: every write is idempotent: "
        job = make_job(clock, idempotency_claim="claim-r")
        assert await store.claim_idempotency_key("claim-r", "fp", job.id, 30) == (None, True), (
            "rule: a free claim is granted"
        )
        assert await store.claim_idempotency_key("claim-r", "fp", job.id, 30) == (None, True), (
            rule + "a repeated claim for the same job is granted again"
        )
        await store.create(job)
        await store.create(job)  # the same record again: no "exists already"
        assert await store.claim_idempotency_key("claim-r", "fp", job.id, 30) == (None, True), (
            rule + "a claim repeated after its job was created is granted again"
        )
        running = processing(job, clock)
        for _ in range(2):  # start, then the retried start that finds its own write
            assert await store.update(running, expect=(JobStatus.PENDING,)), (
                rule + "a repeated start succeeds"
            )
        running.lease_expires_at = clock() + 99
        for _ in range(2):  # a lease renewal, then its retry
            assert await store.update(running, expect=(JobStatus.PROCESSING,)), (
                rule + "a repeated lease renewal succeeds"
            )
        done = finished(running, clock, result={"text": "x"})
        for _ in range(2):  # the outcome, then its retry
            assert await store.update(done, expect=(JobStatus.PROCESSING,)), (
                rule + "a repeated outcome succeeds"
            )
        assert await store.get(job.id) == done, rule + "the repeated outcome is the stored one"
        assert not await store.update(
            finished(running, clock, result={"other": 1}), expect=(JobStatus.PROCESSING,)
        ), "rule: update is a compare-and-set: only the very same record repeats; another outcome is refused"
        assert await store.delete(job.id), "rule: delete of a live job is True"
        assert not await store.delete(job.id), rule + "a repeated delete is False (gone either way)"
        assert not await store.update(done, expect=(JobStatus.PROCESSING,)), (
            "rule: a deleted job is never resurrected by a repeated update"
        )

    @pytest.mark.asyncio
    async def test_racing_updates_only_one_wins(self, store: JobStore, clock: FakeClock) -> None:
        """Rule: update is atomic: of racing updates with the same ``expect``, exactly one lands,
        and the stored job is the winner's."""
        job = make_job(clock)
        await store.create(job)
        running = processing(job, clock)
        assert await store.update(running, expect=(JobStatus.PENDING,)), "rule: pending -> processing"
        contenders = [finished(running, clock, result={"n": n}) for n in range(8)]
        contenders += [finished(running, clock, error={"message": f"e{n}"}) for n in range(8)]
        wins = await asyncio.gather(*(store.update(c, expect=(JobStatus.PROCESSING,)) for c in contenders))
        assert sum(wins) == 1, f"rule: update is atomic: {sum(wins)} of 16 racing updates landed, not 1"
        assert await store.get(job.id) == contenders[wins.index(True)], "rule: the winner's record is stored"

    @pytest.mark.asyncio
    async def test_finished_job_expires_at_its_time(self, store: JobStore, clock: FakeClock) -> None:
        """Rule: a finished job is forgotten at ``expires_at`` by the store's clock (the
        ``clock`` fixture, not wall time): ``get`` is ``None`` and ``update`` finds nothing."""
        job = make_job(clock, ttl=30)
        await store.create(job)
        running = processing(job, clock)
        await store.update(running, expect=(JobStatus.PENDING,))
        done = finished(running, clock, result={"text": "x"})
        assert await store.update(done, expect=(JobStatus.PROCESSING,)), "rule: processing -> completed"
        clock.advance(29.9)
        assert await store.get(job.id) == done, "rule: expiry: a job is kept until its expires_at"
        clock.advance(0.2)
        assert await store.get(job.id) is None, (
            "rule: expiry: get is None once expires_at passed by the clock"
        )
        assert not await store.update(done, expect=tuple(JobStatus)), (
            "rule: expiry: an expired job is not updated"
        )

    @pytest.mark.asyncio
    async def test_unfinished_jobs_do_not_expire(self, store: JobStore, clock: FakeClock) -> None:
        """Rule: only finished jobs expire; an unfinished job is kept however long (its ttl starts
        at completion)."""
        job = make_job(clock, ttl=1)
        await store.create(job)
        clock.advance(3600)
        assert await store.get(job.id) == job, "rule: expiry: an unfinished job never expires"

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


def _one_claim_won(ids: list[str], answers: list[tuple[str | None, bool]]) -> None:
    winners = [i for i, answer in zip(ids, answers, strict=True) if answer == (None, True)]
    assert len(winners) == 1, (
        f"rule: claims are atomic: {len(winners)} of {len(ids)} racing claims won, not 1"
    )
    assert all(answer in ((None, True), (winners[0], True)) for answer in answers), (
        f"rule: a losing claim answers the winner's job id, got {answers!r}"
    )


async def _let_park(store: JobStore, job_id: str) -> None:
    """Give a just-created ``wait`` task the loop, and a few round trips of ``store``, to read the
    job and park before the test writes: then only a notification can end it in time. (Never a
    sleep for correctness: a wait that parks later still passes, the check is merely weaker.)"""
    for _ in range(3):
        await asyncio.sleep(0)
        await store.get(job_id)


async def _within(awaitable: Any, deadline: float, cause: str) -> Any:
    """``awaitable``'s result, failing the test with the wake-up rule if it takes longer than
    ``deadline`` seconds (the store never woke its waiter for ``cause``)."""
    try:
        return await asyncio.wait_for(awaitable, deadline)
    except TimeoutError:
        pytest.fail(
            f"rule: wake-ups: wait did not return within {deadline} s of {cause}; a store must notify "
            "waiters (in every process it is shared by) of terminal updates and deletes"
        )
