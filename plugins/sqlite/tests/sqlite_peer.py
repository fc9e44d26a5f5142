"""A second process on the test's database file: ``python sqlite_peer.py PATH ACTION JOB_ID``.

``finish``: move the job pending -> processing -> completed and exit. ``delete``: delete it.
``wait``: print ``waiting`` once its wait has begun, then wait up to 60 s and print the job's
final status (or ``gone``). Used by ``test_sqlite_shared.py`` to prove that wake-ups cross
processes, not only store instances.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import structlog
from bifrost_async.jobs import JobStatus
from bifrost_async.store import StoreContext
from bifrost_async.testing import FakeClock, finished, processing

from bifrost_async_sqlite import sqlite_store


async def main(path: Path, action: str, job_id: str) -> None:
    clock = FakeClock(time.time())
    options = {"path": str(path), "sweep_interval": 0, "purge_interval": 0, "notify_interval": 0.02}
    store = sqlite_store(StoreContext(clock=clock, max_jobs=0, options=options))
    await store.start()
    try:
        if action == "wait":
            await store.tailing.wait()
            waiter = asyncio.create_task(store.wait(job_id, 60))
            await asyncio.sleep(0)  # the task runs up to its first read, registered before it
            assert len(store.waiters) == 1  # so no wake-up can be missed from here on
            print("waiting", flush=True)
            job = await waiter
            print("gone" if job is None else job.status.value, flush=True)
            return
        job = await store.get(job_id)
        assert job is not None, f"job {job_id} not found"
        if action == "finish":
            running = processing(job, clock)
            assert await store.update(running, expect=(JobStatus.PENDING,))
            assert await store.update(
                finished(running, clock, result={"by": "peer"}), expect=(JobStatus.PROCESSING,)
            )
        elif action == "delete":
            assert await store.delete(job_id)
        print("done", flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout: answers only
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
