"""Ending a job: one function, whatever ends it.

A run's outcome and a job shutdown will not start (the runner), a job whose worker's lease ran
out (a poll, or a store's own sweep), a client's cancel: each ends a job the same way. A copy of
the job takes the outcome, the store compares-and-sets it against the status the job was read
in, and only the caller whose write landed tells the ``job_finished`` observers, exactly once.
A caller whose write did not land (the job moved on meanwhile) gets ``None`` and notifies nobody.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from bifrost_async.core.jobs import Job, JobStatus
from bifrost_async.core.outcome import Outcome, apply_outcome
from bifrost_async.core.store import JobStore, StoreError

log = structlog.get_logger(__name__)


async def finish_job(
    store: JobStore,
    job: Job,
    outcome: Outcome,
    *,
    now: float,
    expect: JobStatus,
    on_finished: Callable[[Job], None],
    attempts: int = 1,
    retry: Callable[[Callable[[], Awaitable[bool]], float | None], Awaitable[bool]] | None = None,
) -> Job | None:
    """Store ``job`` ended with ``outcome`` if the store still holds it as ``expect``.

    Returns the ended copy when this call's write landed, after calling ``on_finished`` with it
    (the caller's log line and ``job_finished`` notification: once per job, by whoever ended it);
    ``None`` when the stored job is no longer ``expect`` (another process, poller or cancel ended
    it, or it was deleted). ``job`` itself is left as it was. A :class:`StoreError` is retried up
    to ``attempts`` times with a short back-off (a brief outage must not lose a finished job's
    outcome), then raised.

    ``retry``, when given, replaces that loop: it is called once with the write (an awaitable
    factory) and the ended job's ``expires_at`` (after which the result could not be read
    anyway), and retries the write as it sees fit (the runner waits out a store outage).
    """
    ended = job.copy()
    apply_outcome(ended, outcome, now)
    if retry is not None:
        if not await retry(lambda: store.update(ended, expect=(expect,)), ended.expires_at):
            return None
        on_finished(ended)
        return ended
    for attempt in range(attempts):
        try:
            written = await store.update(ended, expect=(expect,))
        except StoreError as exc:
            if attempt + 1 >= attempts:
                raise  # the caller says what it means (a poll: 503; a sweep: the next round)
            log.warning("job.store_error", error=str(exc), attempt=attempt + 1)
            await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
            continue
        if not written:
            return None
        on_finished(ended)
        return ended
    raise AssertionError("unreachable: attempts must be at least 1")
