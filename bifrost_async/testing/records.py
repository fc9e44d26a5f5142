"""The store kit's record rules, part of :class:`~bifrost_async.testing.StoreContract`: a job reads
back exactly as written, updates are an idempotent compare-and-set that never moves status
backwards, and finished jobs expire by the store's clock."""

from __future__ import annotations

import asyncio

import pytest

from ..jobs import JobStatus, new_job_id
from ..store import JobStore
from .clock import FakeClock
from .fixtures import ContractFixtures
from .jobs import finished, make_job, processing


class RecordRules(ContractFixtures):
    """Rules of a single job's record: create, get, update, expiry."""

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
