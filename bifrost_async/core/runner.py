"""The worker pool that runs jobs in the background.

A fixed number of worker tasks take jobs from a :class:`~bifrost_async.core.queue.WorkQueue`
(the in-process :class:`~bifrost_async.core.queue.LocalQueue` unless another is given), run each
through the provider under a per-job timeout and a cancellation watch, and end it with
:func:`~bifrost_async.core.finish.finish_job`. A store outage does not end a job: its start and
terminal writes wait for the store, after the leases are renewed
(:class:`~bifrost_async.core.outage.StoreOutage`). On shutdown, queued and running jobs get a grace
period and whatever has not finished by then is handed back to a distributed queue (another
instance runs it at once) or, with the local queue, failed with a clear error, so nothing stays
``processing``. Admission (the queue's slots) is the queue's business: the service calls
:meth:`JobRunner.admit` once per submit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, cast

import pluggy
import structlog

from bifrost_async.core.estimate import RunTimes
from bifrost_async.core.finish import finish_job
from bifrost_async.core.hooks import notify
from bifrost_async.core.jobs import Job, JobStatus
from bifrost_async.core.logfields import exception_fields
from bifrost_async.core.outage import GaveUp, StoreOutage
from bifrost_async.core.outcome import (
    CapturedResponse,
    Outcome,
    failure,
    outcome_from_response,
)
from bifrost_async.core.provider import Provider, ProviderError
from bifrost_async.core.queue import LocalQueue, Slot, WorkItem, WorkQueue
from bifrost_async.core.reachability import StoreReachability
from bifrost_async.core.store import JobStore, StoreError
from bifrost_async.core.watch import JobEndedElsewhere, run_watched

log = structlog.get_logger(__name__)

#: Seconds a cancelled run may take to unwind before its worker moves on.
_CANCEL_GRACE = 5.0
#: Responses larger than this are turned into results in a thread, off the event loop.
_OFF_LOOP_BYTES = 1024 * 1024


class RunnerConfig(Protocol):
    """What the runner reads of the middleware's options
    (:class:`~bifrost_async.service.config.AsyncJobsConfig` has them all): the core depends on
    these values, not on the service layer's configuration class."""

    @property
    def concurrency(self) -> int: ...
    @property
    def queue_size(self) -> int: ...
    @property
    def job_timeout(self) -> float: ...
    @property
    def max_result_bytes(self) -> int: ...
    @property
    def lease_seconds(self) -> float: ...
    @property
    def shutdown_grace(self) -> float: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    def owner_queue_share(self) -> int: ...


def default_worker_name() -> str:
    """``host:pid``, recorded on the jobs a process runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


class JobRunner:
    """Runs jobs with ``config.concurrency`` workers over a queue of ``config.queue_size``."""

    def __init__(
        self,
        *,
        store: JobStore,
        provider: Provider,
        pm: pluggy.PluginManager,
        config: RunnerConfig,
        worker_name: str | None = None,
        queue: WorkQueue | None = None,
        reachability: StoreReachability | None = None,
    ) -> None:
        self.store = store
        self.provider = provider
        self.pm = pm
        self.config = config
        self.clock: Callable[[], float] = config.clock
        self.worker_name = worker_name or default_worker_name()
        #: Where admitted jobs wait for a worker.
        self.queue: WorkQueue = queue if queue is not None else LocalQueue(config)
        self._workers: list[asyncio.Task[None]] = []
        self._running: dict[str, tuple[Job, asyncio.Task[object]]] = {}
        #: Jobs a worker has taken, from their start write to their terminal write (which may
        #: wait out a store outage): held, so their leases are renewed and nobody judges them.
        self._held: dict[str, Job] = {}
        self._lease_task: asyncio.Task[None] | None = None
        #: This process's view of the store (polls and a sweeping store judge leases by it).
        #: This process's view of the store (shared with a distributed queue, whose take-overs
        #: judge leases too).
        self.reachability = reachability or StoreReachability(self.clock, config.lease_seconds)
        self.outage = StoreOutage(self.reachability, config.lease_seconds)
        #: Typical run time per request type, from the runs this runner ended (``Retry-After``).
        self.run_times = RunTimes()

    # -- the service's side ----------------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        """False before :meth:`start` and once shutdown began: no job is admitted."""
        return self.queue.accepting

    async def admit(self, owner: str = "") -> Slot:
        """Admit a job of ``owner``: a slot in the queue to fill once the job is stored, given back
        if it is not (:class:`~bifrost_async.core.queue.Slot`); or
        :class:`~bifrost_async.core.queue.QueueRefused`."""
        return await self.queue.admit(owner)

    def discard(self, job_id: str) -> bool:
        """Drop a cancelled job from the queue now (its slot, share and spool); ``False`` if it
        is not queued here."""
        return self.queue.discard(job_id)

    @property
    def queued(self) -> int:
        return self.queue.queued

    @property
    def running(self) -> int:
        return len(self._running)

    def queue_position(self, job_id: str) -> int | None:
        """1-based place of a job in this process's queue (``None``: not queued here)."""
        return self.queue.position(job_id)

    def owns(self, job_id: str) -> bool:
        """True while this runner holds the job (queued or running): its lease is alive."""
        return self.queue.holds(job_id) or job_id in self._held

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.queue.start()
        self.queue.accepting = True
        self._workers = [
            asyncio.create_task(self._work(), name=f"bifrost-async-worker-{n}")
            for n in range(self.config.concurrency)
        ]
        self._lease_task = asyncio.create_task(self._renew_leases(), name="bifrost-async-leases")

    async def stop(self) -> None:
        """Stop accepting, let work finish within ``shutdown_grace``, fail what is left."""
        self.queue.accepting = False
        try:
            # submits already admitted (their store write in flight) are queued before the drain
            async with asyncio.timeout(self.config.shutdown_grace):
                await self.queue.settled()
        except TimeoutError:
            log.warning("runner.grace_expired", queued=self.queue.waiting, running=len(self._running))
        self.queue.closing = True  # before any await: no worker may start a job from here on
        for item in self.queue.take_all_nowait():
            await self._fail_unstarted(item)
        for _, task in list(self._running.values()):
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), 10)
        tasks = [*self._workers, *([self._lease_task] if self._lease_task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers, self._lease_task = [], None
        await self.queue.close()

    # -- workers -------------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            item = await self.queue.take()
            if self.queue.closing:
                await self._fail_unstarted(item)
                continue
            # bind/reset rather than bound_contextvars: the same effect without a generator
            # context manager and a scan of every bound variable, once per job
            tokens = structlog.contextvars.bind_contextvars(
                job_id=item.job.id, request_type=item.job.request_type
            )
            try:
                await self._run(item)
            except Exception as exc:
                log.error("job.runner_error", **exception_fields(exc))
            finally:
                structlog.contextvars.reset_contextvars(**tokens)
                item.request.close()
                self.queue.done(item)

    async def _fail_unstarted(self, item: WorkItem) -> None:
        """Hand a queued job that shutdown will not let start back to a distributed queue (another
        instance runs it), else fail it; drop its spool either way."""
        if await self.queue.hand_back(item, ran=False):
            log.info("job.handed_back", job_id=item.job.id, started=False)
            item.request.close()
            self.queue.done(item)
            return
        reason = "the server shut down before the job started"
        await self._finish(item.job, self._shutdown_failure(item.job, reason), expect=JobStatus.PENDING)
        item.request.close()
        self.queue.done(item)

    async def _run(self, item: WorkItem) -> None:
        job = item.job
        self._held[job.id] = job
        try:
            if await self._start(job, expect=item.expect):
                await self._run_started(item)
        finally:
            self._held.pop(job.id, None)

    async def _start(self, job: Job, *, expect: JobStatus) -> bool:
        """Mark ``job`` processing in the store (waiting out an outage); False if it is no longer
        ``expect`` there (pending, or processing for a run a distributed queue re-delivers:
        cancelled meanwhile, or ended by another run) or shutdown's grace ended first."""

        async def attempt() -> bool:
            started = job.copy()  # the held job keeps its status for its renewals until this lands
            now = self.clock()
            started.status, started.started_at, started.worker = JobStatus.PROCESSING, now, self.worker_name
            started.lease_expires_at = now + self.config.lease_seconds
            if not await self.store.update(started, expect=(expect,)):
                return False
            job.status, job.started_at, job.worker = started.status, now, started.worker
            job.lease_expires_at = started.lease_expires_at
            return True

        try:
            written = await self.outage.write(attempt, until=None, clock=self.clock, give_up=self._closing)
        except GaveUp:
            log.warning("job.not_started", reason="the store did not answer before shutdown")
            return False
        if not written:
            log.warning("job.not_started", reason=f"the stored job is no longer {expect.value}")
        return written

    def _closing(self) -> bool:
        return self.queue.closing

    async def _run_started(self, item: WorkItem) -> None:
        job = item.job
        queue_wait = time.monotonic() - item.enqueued_at
        log.info("job.started", queue_wait_ms=round(queue_wait * 1000, 1))
        notify(self.pm, "job_started", job=job)
        started = time.monotonic()
        try:
            outcome = await self._execute(item)
        except Exception:  # a bug of ours must not leave the job processing
            outcome = failure(
                500,
                "internal error while running the job",
                job.extra_fields,
                type="server_error",
                code="internal_error",
            )
        if outcome is None:  # cancelled, removed or handed back: the store holds its state already
            return
        ran = time.monotonic() - started
        self.run_times.observe(job.request_type, ran)
        duration_ms = round(ran * 1000, 1)
        await self._finish(job, outcome, expect=JobStatus.PROCESSING, duration_ms=duration_ms)

    async def _execute(self, item: WorkItem) -> Outcome | None:
        job = item.job
        if self.queue.closing:  # shutdown began while this job was being marked processing
            if await self._hand_back(item):
                return None
            return self._shutdown_failure(job, "the server shut down before the job finished")
        task: asyncio.Task[object] = asyncio.create_task(
            self.provider.execute(item.request, max_result_bytes=self.config.max_result_bytes)
        )
        self._running[job.id] = (job, task)
        try:
            async with asyncio.timeout(self.config.job_timeout):
                ran = await run_watched(task, self.store, job.id, self.config.job_timeout + 1)
            response = cast(CapturedResponse, ran)
        except JobEndedElsewhere:
            log.info("job.cancelled")
            return None
        except TimeoutError:
            return failure(
                504,
                f"the job did not finish within its timeout of {self.config.job_timeout:g} s",
                job.extra_fields,
                type="timeout_error",
                code="job_timeout",
            )
        except ProviderError as exc:
            return failure(
                exc.status_code, exc.message, job.extra_fields, type="provider_error", code=exc.code
            )
        except asyncio.CancelledError:
            current = asyncio.current_task()
            failed = self._shutdown_failure(job, "the server shut down before the job finished")
            if current is not None and current.cancelling():
                # the worker itself is being stopped (the run ignored cancellation for the whole
                # shutdown): record the failure anyway, so the job is not left processing
                await asyncio.shield(self._finish(job, failed, expect=JobStatus.PROCESSING))
                raise
            if self.queue.closing and await self._hand_back(item):
                return None
            return failed
        except Exception as exc:
            log.error("job.crashed", **exception_fields(exc))
            return failure(
                500,
                f"the request crashed while running ({type(exc).__name__})",
                job.extra_fields,
                type="server_error",
                code="job_crashed",
            )
        finally:
            if not task.done():  # a run that ignores cancellation keeps its slot a little longer,
                task.cancel()  # so that real concurrency never exceeds the configured one
                await asyncio.wait({task}, timeout=_CANCEL_GRACE)
            self._running.pop(job.id, None)
        if len(response.body) > _OFF_LOOP_BYTES:
            # parsing and encoding a large body would stall every other request meanwhile
            return await asyncio.to_thread(outcome_from_response, response, job.extra_fields)
        return outcome_from_response(response, job.extra_fields)

    async def _hand_back(self, item: WorkItem) -> bool:
        """At shutdown, give a run this instance will not finish back to a distributed queue, at
        once, so that another instance runs it again (``False``: nobody can; fail it)."""
        handed = await self.queue.hand_back(item, ran=True)
        if handed:
            log.info("job.handed_back", started=True, attempt=item.attempt)
        return handed

    def _shutdown_failure(self, job: Job, reason: str) -> Outcome:
        return failure(500, reason, job.extra_fields, type="server_error", code="server_shutdown")

    async def _renew_leases(self) -> None:
        """Every third of a lease, extend the lease of each job this runner holds, so another
        process sharing the store can tell a live job from one whose worker died. When a store
        call fails, renew at once and then with back-off until a whole round lands; only then do
        the runner's other writes go on (:class:`~bifrost_async.core.outage.StoreOutage`)."""
        failures = 0
        while True:
            await self.outage.next_round(failures)
            held = self.queue.held_jobs()
            held += self._held.values()
            try:
                for job in held:
                    if job.status.terminal:
                        continue
                    job.lease_expires_at = self.clock() + self.config.lease_seconds
                    await self.store.update(job.copy(), expect=(job.status,))
            except StoreError as exc:
                failures += 1
                self.outage.lost(exc)
                continue
            except Exception as exc:  # one odd store error must not end renewals for good
                log.error("job.lease_renewal_failed", **exception_fields(exc))
            failures = 0
            self.outage.renewed(answered=bool(held))

    async def _finish(
        self, job: Job, outcome: Outcome, *, expect: JobStatus, duration_ms: float | None = None
    ) -> None:
        """Store ``job``'s end, waiting out a store outage until the result would have expired
        (or shutdown's grace is over). A job found already ended (cancelled, or failed by
        another process) keeps that end: the outcome is dropped and logged."""

        def finished(ended: Job) -> None:
            event = "job.completed" if outcome.ok else "job.failed"
            log.info(
                event,
                job_id=ended.id,
                request_type=ended.request_type,
                status=ended.status.value,
                status_code=ended.status_code,
                duration_ms=duration_ms,
            )
            notify(self.pm, "job_finished", job=ended)

        async def retry(write: Callable[[], Awaitable[bool]], until: float | None) -> bool:
            return await self.outage.write(write, until=until, clock=self.clock, give_up=self._closing)

        self._held.setdefault(job.id, job)  # held until the write lands: renewed, never judged
        try:
            ended = await finish_job(
                self.store, job, outcome, now=self.clock(), expect=expect, on_finished=finished, retry=retry
            )
        except GaveUp as exc:
            # the lease runs out now; once the store is back, a poll or a sweep fails the job
            log.error("job.outcome_lost", job_id=job.id, status_code=outcome.status_code, error=str(exc))
            return
        except asyncio.CancelledError:
            log.error("job.outcome_lost", job_id=job.id, status_code=outcome.status_code, error="cancelled")
            raise
        finally:
            self._held.pop(job.id, None)
        if ended is None and self.queue.distributed:
            # at-least-once: the job ended first elsewhere (another run of it, re-delivered while
            # this one was thought lost, or a cancel); the first end wins
            log.warning(
                "job.duplicate_result_dropped",
                job_id=job.id,
                worker=self.worker_name,
                reason="the job had already ended (another run of it, or a cancel)",
            )
        elif ended is None:
            log.info("job.outcome_dropped", job_id=job.id, reason="the stored job had ended already")
