"""``Waiters.remember`` / ``recall``: a wait may take a job just read or written instead of reading
it again, but never one that may have ended since (a wake-up for it, or for everyone, came after
the mark), and ``wait_for_job`` then spares exactly its first read."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from bifrost_async.core import waiters as waiters_module
from bifrost_async.core.jobs import Job, JobStatus
from bifrost_async.core.waiters import Waiters, wait_for_job
from bifrost_async.testing import FakeClock, make_job, until


def pending() -> Job:
    return make_job(FakeClock())


def test_a_remembered_job_is_recalled_once() -> None:
    waiters, job = Waiters(), pending()
    waiters.remember(job, waiters.mark())
    assert waiters.recall(job.id) is job
    assert waiters.recall(job.id) is None  # taken: a second wait reads


def test_a_wake_for_the_job_after_the_mark_spoils_it() -> None:
    waiters, job = Waiters(), pending()
    mark = waiters.mark()
    waiters.wake(job.id)  # the job ended while the read was on its way: the read may be stale
    waiters.remember(job, mark)
    assert waiters.woken_since(job.id, mark)
    assert waiters.recall(job.id) is None


def test_a_wake_before_the_mark_or_for_another_job_does_not() -> None:
    waiters, job, other = Waiters(), pending(), pending()
    waiters.wake(job.id)
    mark = waiters.mark()
    waiters.wake(other.id)
    waiters.remember(job, mark)
    assert not waiters.woken_since(job.id, mark)
    assert waiters.recall(job.id) is job


def test_wake_all_spoils_every_mark_taken_before() -> None:
    waiters, job = Waiters(), pending()
    mark = waiters.mark()
    waiters.remember(job, mark)
    waiters.wake_all()  # a resubscription: notifications may have been missed
    assert waiters.woken_since(job.id, mark)
    assert waiters.recall(job.id) is None
    waiters.remember(job, mark)  # remembered late, with the old mark: still spoiled
    assert waiters.recall(job.id) is None


def test_a_forgotten_history_counts_as_woken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiters_module, "_HISTORY", 3)
    waiters, job = Waiters(), pending()
    mark = waiters.mark()
    waiters.wake(job.id)
    for _ in range(3):  # the history overflows: the wake of ``job`` is forgotten
        waiters.wake(pending().id)
    assert waiters.woken_since(job.id, mark)
    assert not waiters.woken_since(job.id, waiters.mark())


def test_finished_jobs_are_not_remembered() -> None:
    waiters, job = Waiters(), pending()
    done = dataclasses.replace(job, status=JobStatus.COMPLETED)
    waiters.remember(done, waiters.mark())
    assert waiters.recall(job.id) is None


def test_an_old_memory_is_not_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    waiters, job = Waiters(), pending()
    now = [1000.0]
    monkeypatch.setattr(waiters_module.time, "monotonic", lambda: now[0])
    waiters.remember(job, waiters.mark())
    now[0] += waiters_module._FRESH_FOR + 0.001
    assert waiters.recall(job.id) is None


def test_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiters_module, "_REMEMBERED", 4)
    waiters = Waiters()
    for _ in range(10):
        waiters.remember(pending(), waiters.mark())
    assert len(waiters._remembered) <= 4


async def test_wait_for_job_spares_its_first_read_only() -> None:
    waiters, job = Waiters(), pending()
    done = dataclasses.replace(job, status=JobStatus.COMPLETED)
    reads: list[str] = []
    stored = [job]

    async def get(job_id: str) -> Job | None:
        reads.append(job_id)
        return stored[0]

    waiters.remember(job, waiters.mark())
    waiting = asyncio.create_task(wait_for_job(waiters, get, job.id, 60))
    await until(lambda: len(waiters) > 0)  # registered, having taken the remembered job, no read
    assert reads == []
    stored[0] = done
    waiters.wake(job.id)
    assert await asyncio.wait_for(waiting, 10) is done
    assert reads == [job.id]  # the wake-up's re-read


async def test_wait_for_job_reads_when_the_job_was_woken_since_the_mark() -> None:
    waiters, job = Waiters(), pending()
    done = dataclasses.replace(job, status=JobStatus.FAILED)
    reads: list[str] = []

    async def get(job_id: str) -> Job | None:
        reads.append(job_id)
        return done

    mark = waiters.mark()
    waiters.wake(job.id)  # a cancel landed after the read began: nobody waited yet
    waiters.remember(job, mark)
    assert await asyncio.wait_for(wait_for_job(waiters, get, job.id, 60), 10) is done
    assert reads == [job.id]


async def test_a_job_settled_here_is_handed_to_the_waits_under_way() -> None:
    waiters, job = Waiters(), pending()
    done = dataclasses.replace(job, status=JobStatus.COMPLETED, result_bytes=10)
    reads: list[str] = []

    async def get(job_id: str) -> Job | None:
        reads.append(job_id)
        return job

    waiting = asyncio.create_task(wait_for_job(waiters, get, job.id, 60))
    await until(lambda: len(waiters) > 0 and len(reads) == 1)
    waiters.settle(done)  # this process's own end of the job landed
    assert await asyncio.wait_for(waiting, 10) is done
    assert reads == [job.id]  # no read back
    later: list[str] = []

    async def get_done(job_id: str) -> Job | None:
        later.append(job_id)
        return done

    assert await wait_for_job(waiters, get_done, job.id, 60) is done
    assert later == [job.id]  # a wait begun after the end reads: nothing was left behind
    assert not waiters._handed
