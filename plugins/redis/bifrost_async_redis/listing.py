"""``list_jobs`` for the Redis store: a sorted set per (owner, request type), scored by
``created_at``, read newest first in batches; entries whose job is gone are pruned on the way.
Public jobs (owner ``""``) have no index, so they are never listed.

Reads are bounded by the page, not by how many jobs the owner has. Without a ``status`` filter,
each round reads ``limit + 1`` records. With one, a read-only script (:data:`MATCHING`) walks the
index on the Redis server, looks at each job's two short hash fields ``status`` and
``expires_at`` and returns only the ids that match, so only the page's records cross the network
and get decoded. One call examines at most :data:`SCAN_BOUND` entries: if the page is not full by
then, it returns what it found with a cursor after the last entry examined, so a rare status
among many thousands of jobs costs the client more pages, never one unbounded request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from bifrost_async.jobs import Job, JobStatus
from bifrost_async.store import decode_cursor, encode_cursor, encode_position

if TYPE_CHECKING:
    from .store import RedisJobStore

#: Index entries one script run examines (each run holds Redis for well under a millisecond).
SCRIPT_BATCH = 500
#: Index entries one filtered call examines at most (then it returns a short page and a cursor).
SCAN_BOUND = 5000

#: KEYS: the owner's list index. ARGV: top score, offset, count, status, now, job key prefix,
#: cursor score or "", cursor id or "", ids wanted. Walks ``count`` entries newest first from
#: ``offset`` below ``top``, skipping those at the cursor's score with an id not below the
#: cursor's (they were on the previous page), and stops early once it has the ids wanted.
#: Returns {entries examined, last id examined, its score, matching ids, ids whose hash is gone}.
MATCHING = """
local entries = redis.call(
  'ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf', 'WITHSCORES', 'LIMIT', ARGV[2], ARGV[3])
local now, want = tonumber(ARGV[5]), tonumber(ARGV[9])
local after = ARGV[7] ~= '' and tonumber(ARGV[7]) or nil
local found, stale, examined, last_id, last_score = {}, {}, 0, '', ''
for i = 1, #entries, 2 do
  local id, score = entries[i], entries[i + 1]
  examined, last_id, last_score = examined + 1, id, score
  if not (after and tonumber(score) == after and id >= ARGV[8]) then
    local f = redis.call('HMGET', ARGV[6] .. id, 'status', 'expires_at')
    if not f[1] then
      stale[#stale + 1] = id
    elseif f[1] == ARGV[4] and (not f[2] or tonumber(f[2]) > now) then
      found[#found + 1] = id
      if #found >= want then break end
    end
  end
end
return {examined, last_id, last_score, found, stale}
"""


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
    now = store.clock()
    found: list[Job] = []
    stale: list[str] = []
    offset = 0
    last: tuple[float, str] | None = None  # the last index entry examined
    exhausted = False
    while len(found) <= limit and not exhausted:
        if status is not None and offset >= SCAN_BOUND:
            break
        if status is None:
            ids, examined, exhausted = await _newest(store, keys[0], after, offset, limit + 1)
        else:
            ids, examined, exhausted, position = await _matching(
                store, keys[0], after, offset, status, now, limit + 1 - len(found), stale
            )
            last = position or last
        offset += examined
        with store.guard():
            pipe = store.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hget(store.job_key(job_id), "record")
            records = await pipe.execute() if ids else []
        for job_id, raw in zip(ids, records, strict=True):
            if raw is None:
                stale.append(job_id)
                continue
            job = Job.from_record_json(raw)
            if job.expired(now) or (status is not None and job.status is not status):
                continue  # (it may have moved on since its status was read)
            found.append(job)
            if len(found) > limit:
                break
    if stale:
        with store.guard():
            for key in keys:  # the index and its twin, which must hold the same jobs
                await store.redis.zrem(key, *stale)
    page = found[:limit]
    if len(found) > limit and page:
        return page, encode_cursor(page[-1])
    if not exhausted and last is not None:  # stopped by SCAN_BOUND: resume after what was read
        return page, encode_position(*last)
    return page, None


def _top(after: tuple[float, str] | None) -> str:
    return repr(after[0]) if after is not None else "+inf"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _newest(
    store: RedisJobStore, index: str, after: tuple[float, str] | None, offset: int, count: int
) -> tuple[list[str], int, bool]:
    """Up to ``count`` index entries from ``offset``: (ids not on an earlier page, entries
    examined, whether the index ended)."""
    with store.guard():
        # withscores: (member, score) pairs, which redis-py's shared sync/async typing cannot say
        entries = cast(
            "list[tuple[bytes, float]]",
            await store.redis.zrevrangebyscore(
                index, _top(after), "-inf", start=offset, num=count, withscores=True
            ),
        )
    ids = [
        _text(member) for member, score in entries if after is None or (float(score), _text(member)) < after
    ]
    return ids, len(entries), len(entries) < count


async def _matching(
    store: RedisJobStore,
    index: str,
    after: tuple[float, str] | None,
    offset: int,
    status: JobStatus,
    now: float,
    want: int,
    stale: list[str],
) -> tuple[list[str], int, bool, tuple[float, str] | None]:
    """Run :data:`MATCHING` once: (matching ids, entries examined, whether the index ended, the
    last entry examined); ids whose hash is gone are added to ``stale``."""
    script = store.redis.register_script(MATCHING)  # only hashes the script
    args: list[str | int] = [
        _top(after),
        offset,
        SCRIPT_BATCH,
        status.value,
        repr(now),
        store.job_key(""),
        repr(after[0]) if after is not None else "",
        after[1] if after is not None else "",
        want,
    ]
    with store.guard():
        examined, last_id, last_score, ids, gone = await script(keys=[index], args=args)
    stale.extend(_text(job_id) for job_id in gone)
    ended = examined < SCRIPT_BATCH and len(ids) < want
    position = (float(last_score), _text(last_id)) if examined else None
    return [_text(job_id) for job_id in ids], int(examined), ended, position
