"""The extensions beyond Bifrost, as service operations: long-poll, cancel and delete, listing.

Each is opt-in: nothing here runs unless a client sends a new header, parameter or method
(docs/EXTENSIONS.md). The HTTP side is ``bifrost_async.http.endpoints``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

import structlog

from bifrost_async.core.capture import ClientDisconnected
from bifrost_async.core.errors import AsyncJobError, not_found
from bifrost_async.core.finish import finish_job
from bifrost_async.core.hooks import notify
from bifrost_async.core.jobs import Job, JobStatus
from bifrost_async.core.numbers import int_param
from bifrost_async.core.outcome import failure
from bifrost_async.core.store import StoreError
from bifrost_async.service.jobs_service import JobService
from bifrost_async.service.prefer import query
from bifrost_async.service.routes import RouteSpec

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: The status code of a cancelled job (nginx's "client closed request", which is also what
#: Google's APIs map their CANCELLED code to): a failed job whose ``error.type`` is "cancelled".
CANCELLED_STATUS = 499
CANCELLED_MESSAGE = "the job was cancelled by its owner"
#: A job submitted without a credential has no owner: anyone with its id may cancel it.
CANCELLED_ANONYMOUS_MESSAGE = "the job was cancelled by a client (it was submitted without a credential)"
#: Page size of the list endpoint: default and largest.
LIST_LIMIT, LIST_MAX = 20, 100


async def unless_disconnected(awaitable: Awaitable[T], receive: Any) -> T:
    """Await ``awaitable``, but give up (:class:`ClientDisconnected`) if the client leaves first:
    a long-poll must not outlive its client.

    ``awaitable`` runs in the caller's own task; one watcher task reads ``receive`` and, when the
    client disconnects, cancels the caller, which turns that cancellation (and only that one) into
    :class:`ClientDisconnected`. Any other cancellation of the caller propagates as it came. This
    is one task per long-poll where a task for ``awaitable`` plus ``asyncio.wait`` cost two tasks,
    a waiter future and its callbacks, and one more loop step to reap the watcher (every
    ``Prefer: wait`` submit comes here; see ``bench/NOTES.md``)."""
    caller = asyncio.current_task()
    assert caller is not None, "called from a task (an ASGI request)"
    gone = False

    async def disconnected() -> None:
        nonlocal gone
        with contextlib.suppress(Exception):  # a receive that fails: the client is as good as gone
            while (await receive())["type"] != "http.disconnect":
                pass
        gone = True
        caller.cancel()

    watcher = asyncio.ensure_future(disconnected())
    try:
        return await awaitable
    except asyncio.CancelledError:
        if gone and caller.uncancel() == 0:  # the watcher's cancellation, and nobody else's
            raise ClientDisconnected() from None
        raise
    finally:
        # not awaited: it is parked in receive() and ends at its next step; it never cancels
        # the caller after this, since it runs only while the caller is suspended
        watcher.cancel()


class JobExtensions:
    """Long-poll, cancel/delete and list on top of a :class:`JobService`."""

    def __init__(self, service: JobService) -> None:
        self.service = service
        self.store = service.store

    async def wait(self, job: Job, seconds: float, receive: Any) -> Job:
        """``job`` once it has ended, or as it is after ``seconds`` (at once when 0 or ended)."""
        if job.status.terminal or seconds <= 0:
            return job
        try:
            waited = await unless_disconnected(self.store.wait(job.id, seconds), receive)
        except StoreError:
            raise self.service.unavailable() from None
        if waited is None:  # deleted or expired while we waited
            raise not_found()
        return waited

    async def cancel_or_delete(self, spec: RouteSpec, job_id: str, scope: dict[str, Any]) -> Job | None:
        """Cancel a pending or running job (returns it, failed as cancelled) or delete a
        finished one (returns ``None``). Owner-checked like a poll: the same single 404."""
        job = await self.service.poll(spec, job_id, scope)
        try:
            while not job.status.terminal:
                outcome = failure(
                    CANCELLED_STATUS,
                    CANCELLED_MESSAGE if job.owner else CANCELLED_ANONYMOUS_MESSAGE,
                    job.extra_fields,
                    type="cancelled",
                    code="job_cancelled",
                )
                was = job.status

                def finished(ended: Job, was: JobStatus = was) -> None:
                    log.info("job.cancel_requested", job_id=ended.id, was=was.value)
                    # a queued job gives back its queue slot and spool now, not when a worker
                    # reaches it (the next submit must not get 429 for a job that will never run)
                    self.service.runner.discard(ended.id)
                    notify(self.service.pm, "job_finished", job=ended)

                # compare-and-set: if a worker moved the job on meanwhile, read it and try again
                cancelled = await finish_job(
                    self.store,
                    job,
                    outcome,
                    now=self.service.config.clock(),
                    expect=was,
                    on_finished=finished,
                )
                if cancelled is not None:
                    return cancelled
                current = await self.store.get(job.id)
                if current is None:
                    raise not_found()
                job = current
            await self.store.delete(job.id)
        except StoreError:
            raise self.service.unavailable() from None
        log.info("job.deleted", job_id=job.id)
        return None

    async def list_page(self, spec: RouteSpec, scope: dict[str, Any]) -> dict[str, Any]:
        """One page of the caller's own jobs of this type, newest first. Items are the job
        without ``result`` and ``error``, so a page's size does not grow with results."""
        params = query(scope)
        status = _status(params.get("status"))
        limit = int_param(params.get("limit"), "limit", minimum=1, maximum=LIST_MAX, default=LIST_LIMIT)
        owner = self.service.owner(scope)
        if not owner:
            raise AsyncJobError(
                403,
                "listing jobs needs a credential: jobs submitted without one are not listed",
                type="permission_error",
                code="owner_required",
            )
        try:
            jobs, cursor = await self.store.list_jobs(
                owner, spec.request_type, status=status, cursor=params.get("cursor"), limit=limit
            )
        except ValueError:
            raise AsyncJobError(400, "invalid cursor", code="invalid_cursor", param="cursor") from None
        except StoreError:
            raise self.service.unavailable() from None
        data = []
        waiting = [job.id for job in jobs if job.status is JobStatus.PENDING]
        try:
            places = await self.service.runner.queue.positions(waiting) if waiting else {}
        except StoreError:
            raise self.service.unavailable() from None
        for job in jobs:
            # without result and error: a page of 100 jobs would otherwise hold 100 results (up
            # to max_result_bytes each); the poll URL, the list URL + "/{id}", has them
            item = job.to_public()
            item.pop("result", None)
            item.pop("error", None)
            position = places.get(job.id)
            if position is not None:
                item["queue_position"] = position
            data.append(item)
        body: dict[str, Any] = {"object": "list", "data": data, "has_more": cursor is not None}
        if cursor is not None:
            body["next_cursor"] = cursor
        return body


def _status(raw: str | None) -> JobStatus | None:
    if raw is None or raw == "":
        return None
    try:
        return JobStatus(raw)
    except ValueError:
        allowed = ", ".join(s.value for s in JobStatus)
        raise AsyncJobError(
            400, f"status must be one of {allowed}", code="invalid_status", param="status"
        ) from None
