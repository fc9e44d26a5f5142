"""``list_jobs`` for the Postgres store: one indexed query per page (index ``jobs_listing``:
owner, request type, ``created_at`` and id descending), resuming after the core's cursor with a
row comparison, so a page costs ``limit + 1`` rows however many jobs the owner has. With a
``status`` filter the same query skips the owner's jobs of that type in other statuses (bounded
by the per-owner share)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bifrost_async.jobs import Job, JobStatus
from bifrost_async.store import decode_cursor, encode_cursor

if TYPE_CHECKING:
    from .store import PostgresJobStore


async def list_jobs(
    store: PostgresJobStore,
    owner: str,
    request_type: str,
    *,
    status: JobStatus | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[Job], str | None]:
    """See :meth:`bifrost_async.store.JobStore.list_jobs`."""
    after = decode_cursor(cursor) if cursor is not None else None  # ValueError for a crafted one
    where = ["owner = $1", "request_type = $2", "(expires_at IS NULL OR expires_at > $3)"]
    args: list[Any] = [owner, request_type, float(store.clock())]
    if status is not None:
        args.append(status.value)
        where.append(f"status = ${len(args)}")
    if after is not None:
        args += [after[0], after[1]]
        where.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    sql = (
        f"SELECT record FROM {store.options.quoted_schema}.jobs WHERE {' AND '.join(where)}"
        f" ORDER BY created_at DESC, id DESC LIMIT ${len(args)}"
    )
    rows = await store.call(lambda conn: conn.fetch(sql, *args))
    jobs = [Job.from_record_json(row["record"]) for row in rows]
    page = jobs[:limit]
    return page, encode_cursor(page[-1]) if len(jobs) > limit and page else None
