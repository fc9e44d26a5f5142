"""Local waiters for :meth:`JobStore.wait`: events that a store's notification sets.

A store keeps one :class:`Waiters` and calls :meth:`Waiters.wake` when it learns that a job ended
or was deleted (directly in the memory store, from a pub/sub message in a shared store);
:func:`wait_for_job` does the rest of the contract: register before reading (so no wake-up is
lost between the read and the wait), re-read after every wake-up, stop at the deadline.

A store whose reads are round trips may also spare a wait its first read: it takes a
:meth:`Waiters.mark` before it reads or writes a job and :meth:`Waiters.remember` s the unfinished
job it got or wrote; a wait on that job soon after (a paced poll right after the poll's read, the
runner's cancellation watch right after its start write) then takes it from
:meth:`Waiters.recall` instead of reading it again, unless a wake-up for the job (or for everyone)
came since the mark, which it would have if the job ended or vanished after that read: a store
wakes its waiters for every terminal write and delete. Likewise a store that has just ended a job
itself :meth:`Waiters.settle` s it: this process's waiters on it wake and are handed the ended
job instead of reading it back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from bifrost_async.core.jobs import Job

#: Job ids whose latest wake-up :class:`Waiters` keeps; beyond that it forgets them all, and every
#: mark taken before counts as woken (a read then happens, as it would without a mark).
_HISTORY = 4096
#: Unfinished jobs :meth:`Waiters.remember` holds at most (forgotten all at once beyond it).
_REMEMBERED = 1024
#: Largest result (``Job.result_bytes``) of an ended job :meth:`Waiters.settle` holds for waiters.
_SETTLED_BYTES = 64 * 1024
#: Seconds a remembered job stands in for a read (a wait normally follows within milliseconds; a
#: subscription that died unnoticed would not report a wake-up, so an old one is never trusted).
_FRESH_FOR = 1.0


class Waiters:
    """Events of the tasks waiting on each job id, and (for stores that use it) the unfinished
    jobs just read or written, which a wait may take instead of a first read."""

    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = {}
        #: Wake-ups so far; a mark is this count at the moment it is taken.
        self._count = 0
        #: job id -> the count at its latest wake-up (the most recent ids; see ``_HISTORY``).
        self._woken: dict[str, int] = {}
        #: Marks below this may have missed a wake-up: a ``wake_all``, or a forgotten history.
        self._floor = 0
        #: job id -> (mark, monotonic time, job) of :meth:`remember`.
        self._remembered: dict[str, tuple[int, float, Job]] = {}
        #: waiter -> the ended job :meth:`settle` handed it.
        self._handed: dict[asyncio.Event, Job] = {}

    def add(self, job_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._events.setdefault(job_id, set()).add(event)
        return event

    def discard(self, job_id: str, event: asyncio.Event) -> None:
        self._handed.pop(event, None)
        events = self._events.get(job_id)
        if events is not None:
            events.discard(event)
            if not events:
                del self._events[job_id]

    def wake(self, job_id: str) -> None:
        """Wake every task waiting on ``job_id``; each re-reads the job."""
        self._count += 1
        self._woken[job_id] = self._count
        if len(self._woken) > _HISTORY:
            self._woken.clear()
            self._floor = self._count
        for event in self._events.get(job_id, ()):
            event.set()

    def wake_all(self) -> None:
        """Wake everyone, e.g. after notifications may have been missed (a reconnect)."""
        for job_id in list(self._events):
            self.wake(job_id)
        self._count += 1
        self._floor = self._count
        self._woken.clear()
        self._remembered.clear()

    def mark(self) -> int:
        """Take before sending a read or write of a job whose result may be :meth:`remember` ed."""
        return self._count

    def woken_since(self, job_id: str, mark: int) -> bool:
        """True if ``job_id`` may have been woken after ``mark`` was taken."""
        return mark < self._floor or self._woken.get(job_id, -1) > mark

    def remember(self, job: Job, mark: int) -> None:
        """Hold ``job`` as the store had it at ``mark`` (read, or written by a compare-and-set
        that landed), for a wait that comes soon after. Only unfinished jobs: a wait on a
        finished one returns at once anyway."""
        if job.status.terminal:
            return
        if len(self._remembered) >= _REMEMBERED:
            self._remembered.clear()
        self._remembered[job.id] = (mark, time.monotonic(), job)

    def settle(self, job: Job) -> None:
        """``job`` has just ended by this process's own write (its compare-and-set landed): wake
        this process's waiters on it, handing each the ended job (when its result is small), so
        that they need not read it back. Only the waiters registered now get it: they were
        waiting when it ended; a wait that starts later reads."""
        if job.status.terminal and job.result_bytes <= _SETTLED_BYTES:
            for event in self._events.get(job.id, ()):
                self._handed[event] = job
        self.wake(job.id)

    def handed(self, event: asyncio.Event) -> Job | None:
        """The ended job :meth:`settle` handed the waiter of ``event``, if any (then forgotten)."""
        return self._handed.pop(event, None)

    def recall(self, job_id: str) -> Job | None:
        """The job :meth:`remember` held for ``job_id`` (then forgotten), if it is still what the
        store holds as far as wake-ups tell: none came for it since its mark, and it is recent.
        Call it only once a waiter is registered (:meth:`add`), so that a wake-up coming after
        this answer is not lost."""
        held = self._remembered.pop(job_id, None)
        if held is None:
            return None
        mark, at, job = held
        if self.woken_since(job_id, mark) or time.monotonic() - at > _FRESH_FOR:
            return None
        return job

    def __len__(self) -> int:
        return sum(len(events) for events in self._events.values())


async def wait_for_job(
    waiters: Waiters,
    get: Callable[[str], Awaitable[Job | None]],
    job_id: str,
    timeout: float,  # noqa: ASYNC109 - a result at the timeout, not an exception
) -> Job | None:
    """:meth:`JobStore.wait` on top of ``waiters`` and the store's ``get``; a read is spared when
    the store remembered the job, or ended it itself (:meth:`Waiters.recall`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        event = waiters.add(job_id)
        try:
            job = waiters.recall(job_id)
            if job is None:
                job = await get(job_id)
            remaining = deadline - loop.time()
            if job is None or job.status.terminal or remaining <= 0:
                return job
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for wraps event.wait() in a task of
                # its own, and every job's cancellation watch and every long-poll waits here
                async with asyncio.timeout(remaining):
                    await event.wait()
            except TimeoutError:
                return await get(job_id)
            ended = waiters.handed(event)
            if ended is not None:
                return ended
        finally:
            waiters.discard(job_id, event)
