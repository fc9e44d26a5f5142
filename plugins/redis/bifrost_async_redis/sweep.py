"""The sweep: fail jobs whose worker died even when nobody polls them.

The core already fails such a job on its next poll. Without a poll, the job would stay
``processing`` in Redis forever (unfinished jobs have no expiry), invisible to anyone watching
the ``job_finished`` results and holding a place in the store's bound. Every process sharing the
store sweeps; the compare-and-set update makes sure exactly one of them fails each orphan, with
the same status (500), code (``worker_lost``) and message as a poll would
(:func:`bifrost_async.core.outcome.worker_lost`).

The sweep also repairs the indexes when a job's hash vanished without our scripts (eviction, an
operator's ``DEL``): the unfinished job's entry would otherwise hold a place in the bound forever.
Its lease still runs out (nobody can renew a missing job), so the sweep finds it in the leases
index, sees the hash gone and drops the id from the bound (``scripts.FORGET_VANISHED``). Entries in
its owner's list index go when that owner next lists (``listing.py`` prunes missing jobs).

A lease that ran out while Redis was unreachable says nothing of its worker: nobody could renew
it. So each round tells the middleware's ``StoreHost.reachability`` whether Redis answered, and
leases are judged only while it allows (Redis has answered this process for a whole lease since
its last failure); a restart of Redis (a new ``run_id``) counts as a failure seen now, even when
no call of this process failed meanwhile.
"""

from __future__ import annotations

import asyncio

import structlog
from bifrost_async.store import StoreError
from redis.exceptions import ResponseError

from . import scripts
from .store import RedisJobStore

log = structlog.get_logger(__name__)

#: Orphans failed per sweep, so one sweep never holds the event loop for long.
BATCH = 100


async def sweep_once(store: RedisJobStore) -> list[str]:
    """Fail every job whose lease ran out by the store's clock; return the ids this call failed.

    Raises :class:`~bifrost_async.store.StoreUnavailable` when Redis is down.
    """
    now = store.clock()
    with store.guard():
        ids = await store.redis.zrangebyscore(store.leases_key, "-inf", f"({now!r}", start=0, num=BATCH)
    reachability = store.host.reachability
    if reachability is not None:
        await _notice_restart(store)
        reachability.answered()
        if not reachability.may_judge_leases():
            return []  # Redis was just unreachable: live workers get a lease to renew first
    failed: list[str] = []
    for raw_id in ids:
        job_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        job = await store.get(job_id)
        if job is None:
            # gone without our scripts (evicted, deleted by hand): free its place in the bound
            await forget_vanished(store, job_id)
            continue
        if job.status.terminal:  # finished: the lease entry is stale
            with store.guard():
                await store.redis.zrem(store.leases_key, job_id)
            continue
        if job.lease_expires_at is None or job.lease_expires_at >= now or store.host.holds(job_id):
            continue  # renewed since the range was read, or running here (a renewal was missed)
        if await store.host.fail_orphan(job):
            failed.append(job_id)
    return failed


async def _notice_restart(store: RedisJobStore) -> None:
    """Tell the host's reachability when Redis restarted since the last look (its ``run_id``
    changed): every lease lapsed meanwhile, whether or not a call of this process failed."""
    with store.guard():
        try:
            info = await store.redis.info("server")
        except ResponseError:  # INFO refused (an ACL without it): outages seen here still count
            return
    run_id = str(info.get("run_id", ""))
    seen, store.run_id = store.run_id, run_id
    if seen is not None and run_id != seen and store.host.reachability is not None:
        store.host.reachability.restarted()


async def forget_vanished(store: RedisJobStore, job_id: str) -> bool:
    """Drop the lease entry of a job :meth:`~RedisJobStore.get` did not find and, if its hash
    is gone, its place in the bound; ``False`` if the hash exists (an expired job)."""
    forget = store.redis.register_script(scripts.FORGET_VANISHED)  # only hashes the script
    with store.guard():
        repaired = await forget(keys=[store.job_key(job_id), store.jobs_key, store.leases_key], args=[job_id])
    if repaired == 1:
        log.warning("redis_store.vanished_job_forgotten", job_id=job_id)
    return bool(repaired == 1)


async def sweep_forever(store: RedisJobStore) -> None:
    """Sweep every ``sweep_interval`` seconds until cancelled; an outage only skips a round, and
    each round tells the host's reachability whether Redis answered."""
    while True:
        await asyncio.sleep(store.options.sweep_interval)
        reachability = store.host.reachability
        try:
            await sweep_once(store)
        except StoreError as exc:  # the next round tries again
            if reachability is not None:
                reachability.failed(str(exc))
            continue
        except Exception:
            log.exception("redis_store.sweep_failed")
