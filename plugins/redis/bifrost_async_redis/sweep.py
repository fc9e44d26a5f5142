"""The sweep: fail jobs whose worker died even when nobody polls them.

The core already fails such a job on its next poll. Without a poll, the job would stay
``processing`` in Redis forever (unfinished jobs have no expiry), invisible to anyone watching
the ``job_finished`` results and holding a place in the store's bound. Every process sharing the
store sweeps; the compare-and-set update makes sure exactly one of them fails each orphan, with
the same status (500), code (``worker_lost``) and message as a poll would.
"""

from __future__ import annotations

import asyncio
import dataclasses

import structlog
from bifrost_async.errors import error_body
from bifrost_async.jobs import Job, JobStatus
from bifrost_async.store import StoreError

from .store import RedisJobStore

log = structlog.get_logger(__name__)

#: The core's wording for a lost worker (``bifrost_async.service``), so a swept job and a polled
#: one read the same.
WORKER_LOST = "the worker running this job was lost before it finished (its lease ran out)"
#: Orphans failed per sweep, so one sweep never holds the event loop for long.
BATCH = 100


def orphan_failure(job: Job, now: float) -> Job:
    """A copy of ``job``, failed now as lost with its worker, expiring after its TTL."""
    failed = dataclasses.replace(job)
    failed.status = JobStatus.FAILED
    failed.status_code = 500
    failed.result = None
    failed.error = error_body(
        500, WORKER_LOST, type="server_error", code="worker_lost", extra_fields=job.extra_fields
    )
    failed.completed_at = now
    failed.expires_at = now + job.ttl
    failed.lease_expires_at = None
    return failed


async def sweep_once(store: RedisJobStore) -> list[str]:
    """Fail every job whose lease ran out by the store's clock; return the ids this call failed.

    Raises :class:`~bifrost_async.store.StoreUnavailable` when Redis is down.
    """
    now = store.clock()
    with store.guard():
        ids = await store.redis.zrangebyscore(store.leases_key, "-inf", f"({now!r}", start=0, num=BATCH)
    failed: list[str] = []
    for raw_id in ids:
        job_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        job = await store.get(job_id)
        if job is None or job.status.terminal:
            # finished or gone: the index entry is stale (e.g. the job was deleted by hand)
            with store.guard():
                await store.redis.zrem(store.leases_key, job_id)
            continue
        if job.lease_expires_at is None or job.lease_expires_at >= now or store.holds(job_id):
            continue  # renewed since the range was read, or running here (a renewal was missed)
        orphan = orphan_failure(job, now)
        if await store.update(orphan, expect=(job.status,)):
            log.warning("job.orphan_failed", job_id=job_id, worker=job.worker, by="sweep")
            store.on_orphan_failed(orphan)
            failed.append(job_id)
    return failed


async def sweep_forever(store: RedisJobStore) -> None:
    """Sweep every ``sweep_interval`` seconds until cancelled; an outage only skips a round."""
    while True:
        await asyncio.sleep(store.options.sweep_interval)
        try:
            await sweep_once(store)
        except StoreError:
            pass  # already logged by the store; the next round tries again
        except Exception:
            log.exception("redis_store.sweep_failed")
