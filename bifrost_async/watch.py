"""Stop a running job when its stored job ends elsewhere (cancelled on this or another process).

While a provider runs a job, the runner also waits on the store for that job: a store wakes its
waiters on every terminal update and delete, in every process sharing it, so a cancel made
anywhere reaches the process running the job within one notification's latency (Redis pub/sub:
milliseconds), with no polling. Cancelling the provider's task cancels the in-process replay or
closes the upstream connection, and frees the worker slot.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from .store import JobStore

log = structlog.get_logger(__name__)


class JobEndedElsewhere(Exception):
    """The stored job became terminal (or vanished) while it ran; the run was cancelled."""


async def run_watched(
    task: asyncio.Task[object],
    store: JobStore,
    job_id: str,
    timeout: float,  # noqa: ASYNC109 - bounds the watch only; the caller times the job
) -> object:
    """Await ``task``; if the stored job ends or disappears first, cancel ``task`` and raise
    :class:`JobEndedElsewhere`. Cancelling this coroutine (the job's timeout) cancels ``task``."""
    watch = asyncio.create_task(store.wait(job_id, timeout))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        try:
            stored = watch.result()
        except Exception as exc:  # the store is down: the run goes on, only unwatched
            log.warning("job.watch_failed", error_type=type(exc).__name__)
            return await task
        if stored is not None and not stored.status.terminal:
            return await task  # the watch timed out; the job's own timeout governs
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise JobEndedElsewhere()
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
