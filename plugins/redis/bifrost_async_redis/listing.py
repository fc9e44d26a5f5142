"""``list_jobs`` for the Redis store: a sorted set per (owner, request type), scored by
``created_at``, read newest first in batches; entries whose job is gone are pruned on the way.
Public jobs (owner ``""``) have no index, so they are never listed."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from bifrost_async.jobs import Job, JobStatus
from bifrost_async.store import decode_cursor, encode_cursor, list_key

if TYPE_CHECKING:
    from .store import RedisJobStore

#: Index entries read per round trip (at least; more for large pages).
_BATCH = 100


async def list_jobs(
    store: RedisJobStore,
    owner: str,
    request_type: str,
    *,
    status: JobStatus | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[Job], str | None]:
    """See :meth:`bifrost_async.store.JobStore.list_jobs`."""
    # the core refuses nan/inf and non-UUID ids, which as a Redis range bound would be an error reply
    after = decode_cursor(cursor) if cursor is not None else None
    keys = store.owner_keys(owner, request_type)
    if not keys:
        return [], None
    index = keys[0]
    top = repr(after[0]) if after is not None else "+inf"
    now = store.clock()
    batch = max(_BATCH, 2 * limit)
    found: list[Job] = []
    stale: list[str] = []
    offset = 0
    while len(found) <= limit:
        with store.guard():
            entries = await store.redis.zrevrangebyscore(index, top, "-inf", start=offset, num=batch)
            ids = [e.decode() if isinstance(e, bytes) else str(e) for e in entries]
            pipe = store.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hget(store.job_key(job_id), "record")
            records = await pipe.execute() if ids else []
        offset += len(ids)
        for job_id, raw in zip(ids, records, strict=True):
            if raw is None:
                stale.append(job_id)
                continue
            job = Job.from_record(json.loads(raw))
            if after is not None and list_key(job) >= after:
                continue  # on the previous page (same created_at, larger id)
            if job.expired(now) or (status is not None and job.status is not status):
                continue
            found.append(job)
            if len(found) > limit:
                break
        if len(ids) < batch:
            break
    if stale:
        with store.guard():
            for key in keys:  # the index and its twin, which must hold the same jobs
                await store.redis.zrem(key, *stale)
    page = found[:limit]
    return page, encode_cursor(page[-1]) if len(found) > limit and page else None
