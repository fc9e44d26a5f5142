"""Local waiters for :meth:`JobStore.wait`: events that a store's notification sets.

A store keeps one :class:`Waiters` and calls :meth:`Waiters.wake` when it learns that a job ended
or was deleted (directly in the memory store, from a pub/sub message in a shared store);
:func:`wait_for_job` does the rest of the contract: register before reading (so no wake-up is
lost between the read and the wait), re-read after every wake-up, stop at the deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from bifrost_async.core.jobs import Job


class Waiters:
    """Events of the tasks waiting on each job id."""

    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = {}

    def add(self, job_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._events.setdefault(job_id, set()).add(event)
        return event

    def discard(self, job_id: str, event: asyncio.Event) -> None:
        events = self._events.get(job_id)
        if events is not None:
            events.discard(event)
            if not events:
                del self._events[job_id]

    def wake(self, job_id: str) -> None:
        """Wake every task waiting on ``job_id``; each re-reads the job."""
        for event in self._events.get(job_id, ()):
            event.set()

    def wake_all(self) -> None:
        """Wake everyone, e.g. after notifications may have been missed (a reconnect)."""
        for job_id in list(self._events):
            self.wake(job_id)

    def __len__(self) -> int:
        return sum(len(events) for events in self._events.values())


async def wait_for_job(
    waiters: Waiters,
    get: Callable[[str], Awaitable[Job | None]],
    job_id: str,
    timeout: float,  # noqa: ASYNC109 - a result at the timeout, not an exception
) -> Job | None:
    """:meth:`JobStore.wait` on top of ``waiters`` and the store's ``get``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        event = waiters.add(job_id)
        try:
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
        finally:
            waiters.discard(job_id, event)
