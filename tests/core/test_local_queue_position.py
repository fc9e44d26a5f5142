"""LocalQueue.position places a job in O(1) from arrival numbers (a 202's Retry-After asks on
every poll); it must agree with the queue's order through takes and cancels while queued."""

from __future__ import annotations

import asyncio
import random

from bifrost_async.core.jobs import Job, JobStatus
from bifrost_async.core.queue import LocalQueue, WorkItem


class Config:
    queue_size = 10_000

    def owner_queue_share(self) -> int:
        return 0


class Request:
    def close(self) -> None:
        pass


def item(number: int) -> WorkItem:
    job = Job(
        id=f"00000000-0000-4000-8000-{number:012d}",
        request_id="r",
        request_type="embedding",
        status=JobStatus.PENDING,
        created_at=0.0,
        ttl=60,
    )
    return WorkItem(job=job, request=Request())  # type: ignore[arg-type]


async def test_positions_follow_puts_takes_and_cancels() -> None:
    queue = LocalQueue(Config())
    queue.accepting = True
    rng = random.Random(16)
    order: list[str] = []  # the queued jobs, first to run first
    number = 0
    for _ in range(3_000):
        action = rng.random()
        if action < 0.5 or not order:
            number += 1
            slot = await queue.admit("owner")
            await slot.enqueue(each := item(number))
            order.append(each.job.id)
        elif action < 0.7:
            gone = rng.choice(order)
            assert queue.discard(gone)
            order.remove(gone)
        else:
            taken = await asyncio.wait_for(queue.take(), 5)
            assert taken.job.id == order.pop(0)
            queue.done(taken)
        for place, job_id in enumerate(order, start=1):
            assert queue.position(job_id) == place
    assert queue.position("00000000-0000-4000-8000-999999999999") is None
