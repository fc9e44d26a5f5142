"""Admission: the refusals of a submit that need no body, made before the body is spooled.

A submit's claim on shared capacity is judged here, cheapest first: an idempotent repeat is
answered from a digest of its streamed body (it takes nothing); then the caller's share of the
store (``owner_max_jobs`` live jobs, counted by the store, across processes on a shared one),
then its share of this process's queue (``owner_queue_size`` queued or running) and the queue
itself. Only a submit that passes is spooled. After it is stored, :meth:`Admission.create`
maps the store's own (atomic) refusals and frees a refused submit's idempotency claim.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import structlog

from bifrost_async.core.errors import AsyncJobError
from bifrost_async.core.jobs import Job
from bifrost_async.core.queue import QueueRefused, Slot
from bifrost_async.core.runner import JobRunner
from bifrost_async.core.store import JobStore, OwnerShareFull, StoreError, StoreFull
from bifrost_async.service.config import AsyncJobsConfig
from bifrost_async.service.idempotency import repeat_answer, stream_fingerprint
from bifrost_async.service.routes import RouteSpec

if TYPE_CHECKING:
    from bifrost_async.service.jobs_service import JobService

log = structlog.get_logger(__name__)


def owner_quota(message: str, config: AsyncJobsConfig) -> AsyncJobError:
    """429 for a caller over its share (of the store or of the queue): it alone waits."""
    return AsyncJobError(
        429,
        f"{message}; retry later",
        type="rate_limit_error",
        code="owner_quota_exceeded",
        headers={"Retry-After": str(config.retry_after)},
    )


class Admission:
    """The admission steps of :class:`~bifrost_async.service.jobs_service.JobService` (its config, store and
    runner, read through the service so that a replaced store is seen here too)."""

    def __init__(self, service: JobService) -> None:
        self.service = service

    @property
    def config(self) -> AsyncJobsConfig:
        return self.service.config

    @property
    def store(self) -> JobStore:
        return self.service.store

    @property
    def runner(self) -> JobRunner:
        return self.service.runner

    def unavailable(self, message: str = "the job store is unavailable; retry later") -> AsyncJobError:
        return self.service.unavailable(message)

    async def answer_repeat(self, spec: RouteSpec, scope: dict[str, Any], receive: Any, claim: str) -> None:
        """When ``claim`` is held, answer from a digest of the streamed body (which is never
        spooled) before any slot or share is taken; return when the key is free."""
        try:
            held = await self.store.find_idempotency_key(claim)
            if held is None:
                return
            mine = await stream_fingerprint(
                spec, scope.get("query_string", b""), scope["headers"], receive, self.config.max_body_bytes
            )
            raise await repeat_answer(self.store, held[0], held[1] == mine)
        except StoreError:
            raise self.unavailable() from None

    async def admit(self, owner: str) -> Slot:
        """A queue slot for ``owner`` (a context manager: given back unless the job fills it), or
        a refusal: 429 when its share of the store or of the queue is used up or the queue is
        full, 503 when the server is shutting down."""
        share = self.config.owner_job_share()
        try:
            if share and await self.store.owner_jobs(owner) >= share:
                raise owner_quota(f"this caller holds its share of {share} live jobs", self.config)
        except StoreError:
            raise self.unavailable() from None
        try:
            return await self.runner.admit(owner)
        except QueueRefused as refused:
            if refused.reason == "closed":
                raise self.unavailable("the server is shutting down and accepts no new jobs") from None
            if refused.reason == "owner_full":
                queue_share = self.config.owner_queue_share()
                raise owner_quota(
                    f"this caller has its share of {queue_share} jobs queued or running", self.config
                ) from None
        raise AsyncJobError(
            429,
            "the job queue is full; retry later",
            type="rate_limit_error",
            code="queue_full",
            headers={"Retry-After": str(self.config.retry_after)},
        )

    async def create(self, job: Job) -> None:
        """Store ``job``; on any refusal release its idempotency claim, so that a retry with the
        same key is judged afresh rather than answered 409 until the claim lapses."""
        try:
            await self.store.create(job)
        except BaseException as exc:
            if job.idempotency_claim is not None:
                with contextlib.suppress(StoreError):
                    await self.store.release_idempotency_key(job.idempotency_claim, job.id)
            if isinstance(exc, OwnerShareFull):
                raise owner_quota(str(exc), self.config) from None
            if isinstance(exc, StoreFull):
                raise self.unavailable(str(exc)) from None
            raise

    async def withdraw(self, job: Job) -> None:
        """Remove a stored job that will never run (with its claim). If the store fails here,
        the job's lease (which no runner renews) lets the next poll or sweep fail it."""
        try:
            await self.store.delete(job.id)
        except StoreError:
            log.warning("job.withdraw_failed", job_id=job.id)
