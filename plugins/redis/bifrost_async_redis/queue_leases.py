"""The Redis work queue's leases: renewing the entries an instance runs, and taking over those
of an instance that died.

While a job runs, its entry's idle time is reset every third of ``lease_seconds`` (``XCLAIM ...
JUSTID`` to itself). Every quarter of ``lease_seconds`` each instance claims entries idle longer
than ``lease_seconds`` (``XAUTOCLAIM``, resuming its cursor): a run whose instance died. Such an
entry becomes a fresh entry of the next attempt, or, once the job's attempts are spent, the job
fails ``worker_lost``. When a scan wraps, consumers with nothing pending that were silent for ten
leases (killed instances) are deleted.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog
from bifrost_async.jobs import JobStatus
from bifrost_async.queue import finish_job, worker_lost_outcome

if TYPE_CHECKING:
    from .queue import RedisWorkQueue

log = structlog.get_logger(__name__)

GROUP = "workers"


def reraise_cancellation() -> None:
    """Raise ``CancelledError`` if this task is being cancelled: redis-py may turn the cancel of
    a command into a connection error or an empty answer, which must not keep a loop going."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def tick(queue: RedisWorkQueue, interval: float) -> bool:
    """Wait ``interval`` seconds; ``False`` once the queue is stopping."""
    reraise_cancellation()
    try:
        await asyncio.wait_for(queue._stopped.wait(), interval)
    except TimeoutError:
        return True
    return False


def text(value: Any) -> str:
    """A Redis reply (bytes) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


async def renew_forever(queue: RedisWorkQueue) -> None:
    """Reset the idle time of the entries this instance runs, so no one reclaims them."""
    while await tick(queue, queue.config.lease_seconds / 3):
        entries = [entry for entry, _ in queue._held.values()]
        if not entries:
            continue
        try:
            await queue.redis.xclaim(queue.stream, GROUP, queue.consumer, 0, list[Any](entries), justid=True)
        except Exception as exc:
            reraise_cancellation()
            if queue.reachability is not None:
                queue.reachability.failed(type(exc).__name__)
            log.warning("redis_queue.renew_failed", error_type=type(exc).__name__)


async def reclaim_forever(queue: RedisWorkQueue) -> None:
    """Take entries whose consumer stopped renewing them for ``lease_seconds``; none while this
    process may not judge leases (Redis was unreachable less than a lease ago: every entry's
    idle time grew through the outage, live instances' too, and they renew first)."""
    lease_ms = max(1, int(queue.config.lease_seconds * 1000))
    reachability = queue.reachability
    while await tick(queue, queue.config.lease_seconds / 4):
        if not queue.accepting:
            continue
        if reachability is not None and not reachability.may_judge_leases():
            try:  # a cheap call that tells the reachability when Redis answers again
                await queue.redis.ping()
                reachability.answered()
            except Exception as exc:
                reraise_cancellation()
                reachability.failed(type(exc).__name__)
            continue
        try:
            claimed: Any = await queue.redis.xautoclaim(
                queue.stream, GROUP, queue.consumer, lease_ms, start_id=queue._cursor, count=16
            )
            queue._cursor = text(claimed[0])  # "0-0" once the whole pending list was scanned
            for entry_id, fields in claimed[1]:
                if fields:
                    await reclaimed(queue, text(entry_id), fields)
            if queue._cursor == "0-0":
                await forget_dead_consumers(queue)
        except Exception as exc:
            reraise_cancellation()
            if reachability is not None:
                reachability.failed(type(exc).__name__)
            log.warning("redis_queue.reclaim_failed", error_type=type(exc).__name__)


async def forget_dead_consumers(queue: RedisWorkQueue) -> None:
    """Delete consumers (killed instances) with nothing pending and silent for long, so the
    group does not grow by one name per instance ever started; a live one that is deleted
    comes back at its next read."""
    silent_ms = max(60.0, 10 * queue.config.lease_seconds) * 1000
    consumers: Any = await queue.redis.xinfo_consumers(queue.stream, GROUP)
    for consumer in consumers:
        name = text(consumer["name"])
        if name != queue.consumer and consumer["pending"] == 0 and consumer["idle"] > silent_ms:
            await queue.redis.xgroup_delconsumer(queue.stream, GROUP, name)
            log.info("redis_queue.consumer_forgotten", consumer=name)


async def reclaimed(queue: RedisWorkQueue, entry_id: str, fields: dict[Any, Any]) -> None:
    job_id, attempt = text(fields.get(b"job", b"")), int(fields.get(b"attempt", 1))
    job = await queue.store.get(job_id)
    if job is None or job.status.terminal:
        await queue.ack(entry_id, job_id)
        return
    if job.status is JobStatus.PENDING:  # it died before starting: the run was not lost
        log.info("job.reclaimed", job_id=job_id, attempt=attempt, previous_worker=job.worker)
        await queue.requeue(entry_id, attempt_delta=0, job_id=job_id, attempt=attempt)
        return
    if attempt >= queue.config.attempts_for(job.request_type):
        log.warning("job.attempts_spent", job_id=job_id, attempts=attempt, previous_worker=job.worker)
        await finish_job(
            queue.store,
            job,
            worker_lost_outcome(job),
            now=queue.config.clock(),
            expect=job.status,
            on_finished=queue.finished_hook,
        )
        await queue.ack(entry_id, job_id)
        return
    log.warning("job.reclaimed", job_id=job_id, attempt=attempt + 1, previous_worker=job.worker)
    await queue.requeue(entry_id, attempt_delta=1, job_id=job_id, attempt=attempt)
