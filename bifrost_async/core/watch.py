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

from bifrost_async.core.jobs import Job
from bifrost_async.core.store import JobStore

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
    :class:`JobEndedElsewhere`. Cancelling this coroutine (the job's timeout) cancels ``task``.

    The watch starts one event-loop step after ``task`` (``call_soon`` runs in order, so after the
    task's first step): a run that ends in its first step, as a quick in-process endpoint does,
    never starts one, which saves a task, a store read and its waiter per job. A job cancelled in
    that step is still seen: the watch reads the job after registering its waiter, and a run
    that already ended wins anyway, as it does when both finish together.
    """
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()
    watch: asyncio.Task[Job | None] | None = None

    def wake(_: object) -> None:
        if not woken.done():
            woken.set_result(None)

    def watched(finished: asyncio.Task[Job | None]) -> None:
        if finished.cancelled():
            return
        error = finished.exception()
        if error is not None:  # the store is down: the run goes on, only unwatched
            log.warning("job.watch_failed", error_type=type(error).__name__)
            return
        stored = finished.result()
        if stored is not None and not stored.status.terminal:
            return  # the watch timed out; the job's own timeout governs
        wake(None)

    def start_watch() -> None:
        nonlocal watch
        if not task.done():
            watch = loop.create_task(store.wait(job_id, timeout))
            watch.add_done_callback(watched)

    task.add_done_callback(wake)
    starter = loop.call_soon(start_watch)
    try:
        # a plain future, not ``await task``: cancelling this coroutine must not wait for a run
        # that ignores cancellation (the caller gives it a grace period of its own)
        await woken
        if task.done():  # the run ended first (or together with the watch): it wins
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise JobEndedElsewhere()
    finally:
        starter.cancel()
        task.remove_done_callback(wake)
        if watch is not None:
            watch.cancel()
        if not task.done():
            task.cancel()
