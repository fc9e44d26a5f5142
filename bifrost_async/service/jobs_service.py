"""Submit and poll: the contract's rules, independent of how requests arrive."""

from __future__ import annotations

import asyncio
import hmac
import re
from typing import Any

import pluggy
import structlog

from bifrost_async.core.capture import CapturedRequest, Headers, header_value, spool_body
from bifrost_async.core.errors import AsyncJobError, model_extra_fields, not_found
from bifrost_async.core.finish import finish_job
from bifrost_async.core.hooks import notify
from bifrost_async.core.jobs import Job, JobStatus, is_job_id, new_job_id
from bifrost_async.core.outcome import worker_lost, worker_lost_outcome
from bifrost_async.core.queue import Slot, WorkItem
from bifrost_async.core.runner import JobRunner
from bifrost_async.core.store import JobStore, StoreError
from bifrost_async.service.admission import Admission
from bifrost_async.service.config import AsyncJobsConfig
from bifrost_async.service.forwarding import networks, peer_address, with_forwarded_for
from bifrost_async.service.idempotency import (
    CLAIM_WINDOW,
    claim_digest,
    repeat_answer,
    requested_key,
    spool_fingerprint,
)
from bifrost_async.service.prefer import replay_headers
from bifrost_async.service.routes import RouteSpec
from bifrost_async.service.validation import validate_body

log = structlog.get_logger(__name__)

TTL_HEADER = b"x-bf-async-job-result-ttl"
_INTEGER = re.compile(r"[+-]?[0-9]+")
#: Bodies larger than this are validated and fingerprinted in a thread, off the event loop.
OFF_LOOP_BYTES = 1024 * 1024
#: An x-request-id is echoed when it is printable ASCII of sane length, else replaced.
_REQUEST_ID = re.compile(r"[\x20-\x7e]{1,512}")


def parse_ttl(raw: bytes | None, default: int, maximum: int) -> int:
    """The contract's TTL rule: absent, empty, non-integer, zero or negative give ``default``;
    larger than ``maximum`` gives ``maximum``."""
    if raw is None:
        return default
    text = raw.decode("latin-1").strip()
    if not _INTEGER.fullmatch(text):
        return default
    digits = text.lstrip("+-").lstrip("0") or "0"
    if text.startswith("-") or digits == "0":
        return default
    if len(digits) > len(str(maximum)):  # no need to build a huge int to know it is too big
        return maximum
    return min(int(digits), maximum)


class JobService:
    """Implements submit and poll on a store and a runner."""

    def __init__(
        self, *, config: AsyncJobsConfig, pm: pluggy.PluginManager, store: JobStore, runner: JobRunner
    ) -> None:
        self.config = config
        self.pm = pm
        self.store = store
        self.runner = runner
        self.admission = Admission(self)
        self._trusted = networks(config.trusted_proxies)
        #: A distributed queue stores the body where every instance reads it: its own limit too.
        self._body_limit = (
            min(config.max_body_bytes, config.max_queued_body_bytes)
            if runner.queue.distributed
            else config.max_body_bytes
        )

    def owner(self, scope: dict[str, Any]) -> str:
        """Who is asking, as the ``job_owner`` hook decides."""
        owner = self.pm.hook.job_owner(headers=scope["headers"], scope=scope, secret=self.config.owner_secret)
        return owner or ""

    def unavailable(self, message: str = "the job store is unavailable; retry later") -> AsyncJobError:
        """A 503 with ``Retry-After`` (the store is down, full, or the server is shutting down)."""
        return AsyncJobError(
            503,
            message,
            type="service_unavailable",
            code="store_unavailable",
            headers={"Retry-After": str(self.config.retry_after)},
        )

    async def submit(
        self, spec: RouteSpec, scope: dict[str, Any], receive: Any, *, metadata: dict[str, str] | None = None
    ) -> Job:
        """Admit, capture, validate, store and enqueue a request; return the pending job. ``metadata``
        is merged into the job's (the caller's own marks, e.g. the header-async route family).

        Raises :class:`AsyncJobError` with the contract's status for every refusal; no job exists
        after a refusal. Every refusal that does not need the body (shutting down, an idempotent
        repeat, the caller's share of the store or queue, a full queue) is decided before the
        body is spooled, so a refused upload costs no disk.
        """
        # plugins refuse before a byte of the body is read (e.g. unknown keys): refusals cost no disk
        self.pm.hook.pre_accept(
            headers=scope["headers"], scope=scope, request_type=spec.request_type, config=self.config
        )
        if not self.runner.accepting:
            raise self.unavailable("the server is shutting down and accepts no new jobs")
        owner = self.owner(scope)  # before reserving: a raising owner hook must not leak a slot
        key = requested_key(scope["headers"])
        claim = claim_digest(owner, key, self.config.owner_secret) if key is not None else None
        if claim is not None:
            await self.admission.answer_repeat(spec, scope, receive, claim)
        with await self.admission.admit(owner) as slot:  # an unfilled slot is given back on exit
            request = await self._capture(spec, scope, receive)
            try:
                job = await self._accept(spec, request, owner, claim, metadata or {}, slot)
            except BaseException:
                request.close()
                raise
        log.info(
            "job.submitted",
            job_id=job.id,
            request_type=job.request_type,
            status=job.status.value,
            body_bytes=request.body_size,
            ttl=job.ttl,
            worker=job.worker,
        )
        notify(self.pm, "job_submitted", job=job)
        return job

    async def _capture(self, spec: RouteSpec, scope: dict[str, Any], receive: Any) -> CapturedRequest:
        headers: Headers = scope["headers"]
        body, size = await spool_body(
            receive,
            headers,
            max_bytes=self._body_limit,
            memory_bytes=self.config.spool_memory_bytes,
            spool_dir=self.config.spool_dir,
        )
        peer = peer_address(scope)
        return CapturedRequest(
            method="POST",
            path=spec.sync_path,
            query_string=scope.get("query_string", b""),
            # The replay (either provider) sends what the forwarding rule says, not the client's claim.
            headers=with_forwarded_for(headers, peer, self._trusted),
            peer=peer,
            body=body,
            body_size=size,
            scope=scope,
        )

    async def _inspect(self, spec: RouteSpec, request: CapturedRequest, claim: str | None) -> tuple[str, str]:
        """Validate the spooled body and, with an ``Idempotency-Key``, fingerprint it: in a
        thread for a large body (reading and parsing it must not hold the event loop)."""

        def inspect() -> tuple[str, str]:
            model = validate_body(spec, request.headers, request.body)
            if claim is None:
                return model, ""
            return model, spool_fingerprint(spec, request.query_string, request.headers, request.body)

        if request.body_size > OFF_LOOP_BYTES:
            return await asyncio.to_thread(inspect)
        return inspect()

    async def _accept(
        self,
        spec: RouteSpec,
        request: CapturedRequest,
        owner: str,
        claim: str | None,
        marks: dict[str, str],
        slot: Slot,
    ) -> Job:
        model, mine = await self._inspect(spec, request, claim)
        metadata = {**self.submit_metadata(request.headers, spec.request_type), **marks}
        now = self.config.clock()
        raw_request_id = header_value(request.headers, b"x-request-id")
        request_id = raw_request_id.decode("latin-1") if raw_request_id else ""
        ttl = parse_ttl(
            header_value(request.headers, TTL_HEADER), self.config.default_ttl, self.config.max_ttl
        )
        job = Job(
            id=new_job_id(),
            request_id=request_id if _REQUEST_ID.fullmatch(request_id) else new_job_id(),
            request_type=spec.request_type,
            status=JobStatus.PENDING,
            created_at=now,
            ttl=ttl,
            owner=owner,
            extra_fields=model_extra_fields(model, spec.request_type),
            metadata=metadata,
            failed_ttl=min(ttl, self.config.max_failed_ttl),
            worker=self.runner.worker_name,
            lease_expires_at=now + self.config.lease_seconds,
        )
        try:
            if claim is not None:  # a racing submit may have claimed the key since it was free
                held, same = await self.store.claim_idempotency_key(claim, mine, job.id, CLAIM_WINDOW)
                if held is not None:
                    raise await repeat_answer(self.store, held, same)
                job.idempotency_claim = claim
            await self.admission.create(job)
        except StoreError:
            raise self.unavailable() from None
        request.headers = replay_headers(request.headers)  # the endpoint gets none of our knobs
        try:
            queued = await slot.enqueue(WorkItem(job=job, request=request))
        except StoreError:  # a distributed queue could not store the request: nobody can run it
            await self.admission.withdraw(job)
            raise self.unavailable() from None
        if not queued:
            # shutdown failed the queue while this job was being stored: nobody would run it
            await self.admission.withdraw(job)
            raise self.unavailable("the server is shutting down and accepts no new jobs")
        return job

    def submit_metadata(self, headers: Headers, request_type: str) -> dict[str, str]:
        """Ask the ``validate_submit`` hooks: any may refuse the submit by raising
        :class:`AsyncJobError`; their answers are merged into the job's metadata."""
        metadata: dict[str, str] = {}
        # pluggy answers last-registered first; apply in registration order so later plugins win
        for answer in reversed(self.pm.hook.validate_submit(headers=headers, request_type=request_type)):
            metadata.update({str(key): str(value) for key, value in (answer or {}).items()})
        return metadata

    async def poll(self, spec: RouteSpec, job_id: str, scope: dict[str, Any]) -> Job:
        """The job for a poll, or the one 404 for unknown, expired, wrong type or wrong owner."""
        if not is_job_id(job_id):
            raise not_found()  # before any store access: odd ids never reach a store
        asker = self.owner(scope)  # computed for every poll, so all 404s cost about the same
        reachability = self.runner.reachability
        try:
            job = await self.store.get(job_id)
        except StoreError as exc:
            reachability.failed(str(exc))
            raise self.unavailable() from None
        reachability.answered()
        now = self.config.clock()
        if job is None or job.expired(now) or job.request_type != spec.request_type:
            raise not_found()
        if job.owner and not hmac.compare_digest(job.owner, asker):
            raise not_found()
        if self._orphaned(job, now) and await self._abandoned(job):
            job = await self._fail_orphan(job)
        return job

    async def _abandoned(self, job: Job) -> bool:
        """A job whose lease ran out is lost only if no instance will run it: always with the
        local queue; with a distributed one, only if it never reached the queue (a job waiting
        there holds no lease, and one whose instance died is re-delivered by the queue)."""
        try:
            return await self.runner.queue.abandoned(job)
        except StoreError:
            raise self.unavailable() from None

    def _orphaned(self, job: Job, now: float) -> bool:
        return (
            not job.status.terminal
            and job.lease_expires_at is not None
            and job.lease_expires_at < now
            and not self.runner.owns(job.id)
            # a lease that ran out while the store was down says nothing of its worker
            and self.runner.reachability.may_judge_leases()
        )

    async def _fail_orphan(self, job: Job) -> Job:
        """Fail a job whose worker stopped renewing its lease; another poller may win the race,
        in which case the stored (terminal) job is returned."""
        try:
            failed = await self.fail_orphan(job, by="poll")
            return failed or await self.store.get(job.id) or worker_lost(job, self.config.clock())
        except StoreError:
            raise self.unavailable() from None

    async def fail_orphan(self, job: Job, *, by: str = "sweep") -> Job | None:
        """End ``job``, whose worker stopped renewing its lease, as ``worker_lost``; returns the
        ended job if this call ended it (the store's compare-and-set lets one caller win; then the
        ``job_finished`` observers are told), else ``None``. ``StoreHost.fail_orphan`` for
        sweeping stores; raises :class:`~bifrost_async.core.store.StoreError` when the store fails.

        Also ``None``, with nothing written, while this process may not judge leases (the store
        was unreachable less than a lease ago: the worker may be alive and about to renew), so
        every sweeping store gets that wait, whether or not it asks ``StoreHost.reachability``."""
        if not self.runner.reachability.may_judge_leases():
            return None

        def finished(ended: Job) -> None:
            log.warning("job.orphan_failed", job_id=ended.id, worker=ended.worker, by=by)
            notify(self.pm, "job_finished", job=ended)

        if self.runner.queue.distributed and not await self.runner.queue.abandoned(job):
            return None  # the queue re-delivers it (XAUTOCLAIM), or fails it once attempts are spent
        outcome = worker_lost_outcome(job)
        now = self.config.clock()
        return await finish_job(self.store, job, outcome, now=now, expect=job.status, on_finished=finished)
