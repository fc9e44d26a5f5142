"""The work queue between accepting a job and running it.

The service *admits* a job with one call, :meth:`WorkQueue.admit`, before its body is read: it
takes a slot, or is refused (:class:`QueueRefused`: closed, the owner's share used up, full). The
:class:`Slot` is a context manager: the job fills it (:meth:`Slot.enqueue`) once stored, and a
slot left unfilled (a refusal, a failed store write, a disconnect) is given back on exit. The
runner consumes the queue (:meth:`WorkQueue.take` / :meth:`WorkQueue.done`); slot bookkeeping
(reservations, owner shares, admissions in flight) never leaves this module.

:class:`WorkQueue` is the protocol the runner consumes; :class:`LocalQueue` is the in-process
implementation (a bounded ``asyncio.Queue``). A distributed queue implements the same protocol
and is registered by a plugin's ``register_queues`` hook (:class:`RegisterQueue`), chosen by the
``queue`` option; its factory receives a :class:`QueueContext`. A distributed queue
(``distributed = True``) re-delivers a job whose instance died (so orphaned jobs are the queue's
business, not the poll's), and hands back at shutdown what it cannot finish
(:meth:`WorkQueue.hand_back`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Literal, Protocol

from bifrost_async.core.capture import CapturedRequest
from bifrost_async.core.jobs import Job, JobStatus
from bifrost_async.core.reachability import StoreReachability
from bifrost_async.core.store import JobStore


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
    #: Which run of the job this is (1 unless a distributed queue re-delivered it).
    attempt: int = 1
    #: The stored status the runner expects when it marks the job ``processing``: ``pending``,
    #: or ``processing`` for a job re-delivered after its instance died or handed it back.
    expect: JobStatus = JobStatus.PENDING
    #: Its order of arrival in a :class:`LocalQueue` (1, 2, ...), which places it in O(1).
    seq: int = 0


class QueueRefused(Exception):
    """No slot for this job: the queue is ``closed`` (shutting down), the owner holds its
    ``owner_full`` share, or the queue is ``full``."""

    def __init__(self, reason: Literal["closed", "owner_full", "full"]) -> None:
        super().__init__(reason)
        self.reason = reason


class SlotHolder(Protocol):
    """The queue side of a :class:`Slot`."""

    def _fill(self, item: WorkItem) -> bool: ...
    def _release(self, owner: str) -> None: ...


class Slot:
    """A place in the queue taken for one job while it is admitted (spooled, validated, stored).
    Use as a context manager: unless :meth:`enqueue` filled it, leaving the block gives it back.
    A distributed queue subclasses it to write the job where every instance sees it."""

    def __init__(self, queue: SlotHolder, owner: str) -> None:
        self._queue = queue
        self._owner = owner
        self._filled = False

    async def enqueue(self, item: WorkItem) -> bool:
        """Queue a stored job into this slot. ``False`` (nothing queued) once shutdown has failed
        what was queued: no worker would ever take the job. A distributed queue may raise
        :class:`~bifrost_async.core.store.StoreError` when its storage is unreachable."""
        self._filled = self._queue._fill(item)
        return self._filled

    def __enter__(self) -> Slot:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._filled:
            self._queue._release(self._owner)


class QueueOptions(QueueConfig, Protocol):
    """What a queue factory may read of the middleware's options
    (:class:`~bifrost_async.service.config.AsyncJobsConfig` has them all)."""

    @property
    def lease_seconds(self) -> float: ...
    @property
    def max_attempts(self) -> int: ...
    def attempts_for(self, request_type: str) -> int: ...
    @property
    def max_queued_body_bytes(self) -> int: ...
    @property
    def spool_memory_bytes(self) -> int: ...
    @property
    def spool_dir(self) -> str | None: ...
    @property
    def encryption_key(self) -> str | None: ...
    @property
    def request_dir(self) -> str | None: ...
    @property
    def clock(self) -> Callable[[], float]: ...


@dataclasses.dataclass(frozen=True)
class QueueContext:
    """What a queue factory receives. The factory is called once while the middleware is built
    (``store`` is ``None`` then: check options, raise ``ValueError`` with a one-line message, and
    return ``None`` or a queue) and
    again at startup, after the store started. It must do no I/O: connect in ``start()``."""

    #: The middleware's options (sizes, lease, attempts, the encryption key).
    config: QueueOptions
    #: The started job store (``None`` while options are checked).
    store: JobStore | None
    #: This process's name (``host:pid``): a distributed queue's consumer name.
    worker_name: str
    #: Called with a job the queue itself ended (a re-delivery whose attempts are spent): the
    #: middleware logs it and tells the ``job_finished`` observers.
    finished: Callable[[Job], None] = dataclasses.field(default=lambda job: None)
    #: Extra options for the queue (plugins' own; empty by default).
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: The process's view of the store (``None`` while options are checked): a queue that takes
    #: over other instances' work reports its calls to it and takes nothing over while
    #: ``may_judge_leases()`` is false (a lease that ran out during an outage says nothing).
    reachability: StoreReachability | None = None


#: Builds a queue; returns ``None`` only when ``context.store`` is ``None`` (options checked).
QueueFactory = Callable[[QueueContext], "WorkQueue | None"]


class RegisterQueue(Protocol):
    """The ``register`` callable that the ``register_queues`` hook receives."""

    def __call__(self, name: str, factory: QueueFactory, *, shared: bool = False) -> None:
        """Register ``factory`` as the queue ``name``; ``shared``: every instance on the same
        store takes work from it (needs a shared store)."""


class WorkQueue(Protocol):
    """The queue as the runner and the service use it."""

    #: False once shutdown began: :meth:`admit` refuses with ``closed``.
    accepting: bool
    #: True once the shutdown grace is over: nothing more is enqueued, workers fail what they take.
    closing: bool
    #: True for a queue every instance shares: it re-delivers jobs whose instance died, so a
    #: poll or a sweep never fails them as orphans (the queue does once attempts are spent).
    distributed: bool

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def admit(self, owner: str) -> Slot: ...
    async def hand_back(self, item: WorkItem, *, ran: bool) -> bool: ...
    def discard(self, job_id: str) -> bool: ...
    def position(self, job_id: str) -> int | None: ...
    async def positions(self, job_ids: list[str]) -> dict[str, int]: ...
    async def abandoned(self, job: Job) -> bool: ...
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

    distributed = False

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
        #: ``seq`` of the last item put, and of the last one a worker took (or skipped): the
        #: items between are queued, less those cancelled while queued (``_skipped_ahead``).
        self._put_seq = 0
        self._taken_seq = 0
        self._skipped_ahead = 0

    async def start(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close."""

    async def hand_back(self, item: WorkItem, *, ran: bool) -> bool:
        """No other instance could take it: ``False`` (the runner fails it, as at shutdown)."""
        return False

    # -- the service's side --------------------------------------------------------------------

    async def admit(self, owner: str = "") -> Slot:
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
        self._skipped_ahead += 1
        self._reserved -= 1
        self._owner_done(item.job.owner)
        item.request.close()
        return True

    def position(self, job_id: str) -> int | None:
        """1-based place of a job in this queue (``None``: not queued here). O(1) unless jobs
        cancelled while queued are still in the queue (then a scan): ``Retry-After`` asks this on
        every poll of a queued job."""
        item = self._queued.get(job_id)
        if item is None:
            return None
        if not self._skipped_ahead:
            return item.seq - self._taken_seq
        for position, queued_id in enumerate(self._queued, start=1):
            if queued_id == job_id:
                return position
        return None

    async def positions(self, job_ids: list[str]) -> dict[str, int]:
        """1-based places of those of ``job_ids`` queued here (a listing's page at once)."""
        places = {job_id: self.position(job_id) for job_id in job_ids if job_id in self._queued}
        return {job_id: place for job_id, place in places.items() if place is not None}

    async def abandoned(self, job: Job) -> bool:
        """Whether nobody will run ``job``, whose lease ran out and which this process does not
        hold: always (only the process that took the submit could run it)."""
        return True

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
        self._put_seq += 1
        item.seq = self._put_seq
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
                self._skip(item)
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
                self._skip(item)
            else:
                items.append(self._taken(item))
        return items

    async def join(self) -> None:
        await self._queue.join()

    def _skip(self, item: WorkItem) -> None:
        self._taken_seq = item.seq
        self._skipped_ahead -= 1
        self._queue.task_done()

    def _taken(self, item: WorkItem) -> WorkItem:
        self._taken_seq = item.seq
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
