"""The work queue between accepting a job and running it.

The service *admits* a job with one call, :meth:`WorkQueue.admit`, before its body is read: it
takes a slot, or is refused (:class:`QueueRefused`: closed, the owner's share used up, full). The
:class:`Slot` is a context manager: the job fills it (:meth:`Slot.enqueue`) once stored, and a
slot left unfilled (a refusal, a failed store write, a disconnect) is given back on exit. The
runner consumes the queue (:meth:`WorkQueue.take` / :meth:`WorkQueue.done`); slot bookkeeping
(reservations, owner shares, admissions in flight) never leaves this module.

:class:`WorkQueue` is the protocol the runner consumes; :class:`LocalQueue` is the in-process
implementation (a bounded ``asyncio.Queue``). A distributed queue implements the same protocol.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from types import TracebackType
from typing import Literal, Protocol

from bifrost_async.core.capture import CapturedRequest
from bifrost_async.core.jobs import Job


class QueueConfig(Protocol):
    """What the queue reads of the middleware's options."""

    @property
    def queue_size(self) -> int: ...
    def owner_queue_share(self) -> int: ...


@dataclasses.dataclass
class WorkItem:
    """A stored job and the captured request it will replay (already aimed at the sync path)."""

    job: Job
    request: CapturedRequest
    enqueued_at: float = dataclasses.field(default_factory=time.monotonic)
    #: Set when the job was cancelled while queued: its slot and spool are freed at once, and the
    #: worker that meets it in the queue skips it.
    discarded: bool = False


class QueueRefused(Exception):
    """No slot for this job: the queue is ``closed`` (shutting down), the owner holds its
    ``owner_full`` share, or the queue is ``full``."""

    def __init__(self, reason: Literal["closed", "owner_full", "full"]) -> None:
        super().__init__(reason)
        self.reason = reason


class Slot:
    """A place in the queue taken for one job while it is admitted (spooled, validated, stored).
    Use as a context manager: unless :meth:`enqueue` filled it, leaving the block gives it back."""

    def __init__(self, queue: LocalQueue, owner: str) -> None:
        self._queue = queue
        self._owner = owner
        self._filled = False

    def enqueue(self, item: WorkItem) -> bool:
        """Queue a stored job into this slot. ``False`` (nothing queued) once shutdown has failed
        what was queued: no worker would ever take the job."""
        self._filled = self._queue._fill(item)
        return self._filled

    def __enter__(self) -> Slot:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._filled:
            self._queue._release(self._owner)


class WorkQueue(Protocol):
    """The queue as the runner and the service use it."""

    #: False once shutdown began: :meth:`admit` refuses with ``closed``.
    accepting: bool
    #: True once the shutdown grace is over: nothing more is enqueued, workers fail what they take.
    closing: bool

    def admit(self, owner: str) -> Slot: ...
    def discard(self, job_id: str) -> bool: ...
    def position(self, job_id: str) -> int | None: ...
    def holds(self, job_id: str) -> bool: ...
    def held_jobs(self) -> list[Job]: ...
    @property
    def queued(self) -> int: ...
    @property
    def waiting(self) -> int: ...
    async def take(self) -> WorkItem: ...
    def done(self, item: WorkItem) -> None: ...
    async def settled(self) -> None: ...
    def take_all_nowait(self) -> list[WorkItem]: ...
    async def join(self) -> None: ...


class LocalQueue:
    """The in-process queue: at most ``config.queue_size`` jobs reserved or queued, at most
    ``config.owner_queue_share()`` of them (queued or running) per owner."""

    def __init__(self, config: QueueConfig) -> None:
        self.config = config
        self.accepting = False
        self.closing = False
        self._queue: asyncio.Queue[WorkItem] = asyncio.Queue()
        self._reserved = 0
        #: Jobs each owner has queued or running here (its share: ``config.owner_queue_share()``).
        self._by_owner: dict[str, int] = {}
        #: Slots taken by submits still being admitted (spooling, storing): shutdown waits for
        #: them, so that a job stored while it drains is still run or failed, never left pending.
        self._admitting = 0
        self._admitted = asyncio.Event()
        self._admitted.set()
        self._queued: dict[str, WorkItem] = {}

    # -- the service's side --------------------------------------------------------------------

    def admit(self, owner: str = "") -> Slot:
        """A slot for a job of ``owner`` about to be stored, or :class:`QueueRefused`."""
        share = self.config.owner_queue_share()
        if not self.accepting:
            raise QueueRefused("closed")
        if self._reserved >= self.config.queue_size or (share and self._by_owner.get(owner, 0) >= share):
            owner_full = bool(share) and self._by_owner.get(owner, 0) >= share
            raise QueueRefused("owner_full" if owner_full else "full")
        self._reserved += 1
        self._by_owner[owner] = self._by_owner.get(owner, 0) + 1
        self._admitting += 1
        self._admitted.clear()
        return Slot(self, owner)

    def discard(self, job_id: str) -> bool:
        """Drop a queued job (it was cancelled): its slot, its owner's share and its spool are
        freed now rather than when a worker reaches it. ``False`` if it is not queued here."""
        item = self._queued.pop(job_id, None)
        if item is None:
            return False
        item.discarded = True
        self._reserved -= 1
        self._owner_done(item.job.owner)
        item.request.close()
        return True

    def position(self, job_id: str) -> int | None:
        """1-based place of a job in this queue (``None``: not queued here)."""
        for position, queued_id in enumerate(self._queued, start=1):
            if queued_id == job_id:
                return position
        return None

    def holds(self, job_id: str) -> bool:
        return job_id in self._queued

    def held_jobs(self) -> list[Job]:
        return [item.job for item in self._queued.values()]

    @property
    def queued(self) -> int:
        """Slots taken: jobs queued, and submits being admitted."""
        return self._reserved

    @property
    def waiting(self) -> int:
        """Items in the queue itself (cancelled ones included until a worker skips them)."""
        return self._queue.qsize()

    def _fill(self, item: WorkItem) -> bool:
        if self.closing:
            return False
        self._queued[item.job.id] = item
        self._queue.put_nowait(item)
        self._admission_over()
        return True

    def _release(self, owner: str) -> None:
        self._reserved -= 1
        self._owner_done(owner)
        self._admission_over()

    # -- the runner's side ---------------------------------------------------------------------

    async def take(self) -> WorkItem:
        """The next job to run (skipping cancelled ones); call :meth:`done` when it has ended."""
        while True:
            item = await self._queue.get()
            if item.discarded:  # cancelled while queued: its slot was freed then
                self._queue.task_done()
                continue
            return self._taken(item)

    def done(self, item: WorkItem) -> None:
        """``item`` has ended (run, or failed unstarted): its owner's share is free again."""
        self._owner_done(item.job.owner)
        self._queue.task_done()

    async def settled(self) -> None:
        """Until every admission in flight is queued or refused and every queued job is done."""
        await self._admitted.wait()
        await self._queue.join()

    def take_all_nowait(self) -> list[WorkItem]:
        """Everything still queued (for shutdown to fail), each to be passed to :meth:`done`."""
        items = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item.discarded:
                self._queue.task_done()
            else:
                items.append(self._taken(item))
        return items

    async def join(self) -> None:
        await self._queue.join()

    def _taken(self, item: WorkItem) -> WorkItem:
        self._reserved -= 1
        self._queued.pop(item.job.id, None)
        return item

    def _owner_done(self, owner: str) -> None:
        left = self._by_owner.get(owner, 0) - 1
        if left > 0:
            self._by_owner[owner] = left
        else:
            self._by_owner.pop(owner, None)  # owners with nothing here leave nothing behind

    def _admission_over(self) -> None:
        self._admitting -= 1
        if self._admitting == 0:
            self._admitted.set()
