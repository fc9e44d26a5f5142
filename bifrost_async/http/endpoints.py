"""The HTTP answers of the async routes: submit and poll as the Bifrost contract has them, plus
the opt-in extensions (docs/EXTENSIONS.md): list, long-poll, cancel/delete, raw result,
idempotent submit, and ``Prefer: respond-async`` on a synchronous route.

A request without any of the new headers, parameters or methods gets exactly the contract's
answer: the branches below only differ when the client asked.
"""

from __future__ import annotations

from typing import Any

from bifrost_async.core.errors import not_found
from bifrost_async.core.jobs import Job
from bifrost_async.core.response import rebuild_raw
from bifrost_async.http.extensions import JobExtensions
from bifrost_async.http.respond import send_bytes, send_json
from bifrost_async.service.config import AsyncJobsConfig
from bifrost_async.service.idempotency import IdempotentReplay
from bifrost_async.service.jobs_service import JobService
from bifrost_async.service.prefer import preferences, preferred_wait, wait_seconds
from bifrost_async.service.routes import RouteSpec, RouteTable

#: Suffix of the raw-result route: ``{prefix}/<type path>/{id}/result``.
RESULT_SUFFIX = "/result"


def match_result(routes: RouteTable, path: str) -> tuple[RouteSpec | None, str | None]:
    """``(spec, job_id)`` for a raw-result path, else ``(None, None)``. Only consulted when
    :meth:`RouteTable.match` found nothing, so it never shadows a configured route."""
    if not path.endswith(RESULT_SUFFIX):
        return None, None
    spec, job_id = routes.match(path[: -len(RESULT_SUFFIX)])
    return (spec, job_id) if job_id is not None else (None, None)


def allowed_methods(job_id: str | None, result: bool) -> str:
    """The ``Allow`` header of an async path: submit and list; poll and cancel; result. ``HEAD``
    is allowed wherever ``GET`` is: the same answer without its body."""
    if result:
        return "GET, HEAD"
    return "GET, HEAD, POST" if job_id is None else "GET, HEAD, DELETE"


def without_body(send: Any) -> Any:
    """``send`` for a ``HEAD`` request: the ``GET`` answer's status and headers (its
    ``Content-Length`` included, as RFC 9110 allows), no body bytes."""

    async def head_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            message = {
                "type": "http.response.body",
                "body": b"",
                "more_body": message.get("more_body", False),
            }
        await send(message)

    return head_send


def sync_route(routes: RouteTable, path: str, scope: dict[str, Any]) -> RouteSpec | None:
    """The route whose synchronous path this request targets, when the client asked for the
    async answer there (``POST`` with ``Prefer: respond-async``); else ``None``."""
    if scope["method"] != "POST" or "respond-async" not in preferences(scope["headers"]):
        return None
    for spec in routes:
        if spec.sync_path == path:
            return spec
    return None


class JobEndpoints:
    """Answers one request on an async route (or a respond-async synchronous one)."""

    def __init__(self, service: JobService, routes: RouteTable) -> None:
        self.service = service
        self.routes = routes
        self.config: AsyncJobsConfig = service.config
        self.ext = JobExtensions(service)

    async def dispatch(
        self,
        spec: RouteSpec,
        job_id: str | None,
        result: bool,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
    ) -> None:
        method = scope["method"]
        if job_id is None:
            if method == "GET":
                await send_json(send, 200, await self.ext.list_page(spec, scope))
            else:
                await self.submit(spec, scope, receive, send)
        elif method == "DELETE":
            cancelled = await self.ext.cancel_or_delete(spec, job_id, scope)
            if cancelled is None:
                await send({"type": "http.response.start", "status": 204, "headers": []})
                await send({"type": "http.response.body", "body": b""})
            else:
                await send_json(send, 200, cancelled.to_public())
        else:
            seconds = wait_seconds(scope, self.config.max_wait_seconds)
            job = await self.service.poll(spec, job_id, scope)
            job = await self.ext.wait(job, seconds, receive)
            if result and job.status.terminal:
                await self.send_raw(job, send)
            else:
                await self.send_job(job, send)

    async def submit(
        self, spec: RouteSpec, scope: dict[str, Any], receive: Any, send: Any, *, respond_async: bool = False
    ) -> None:
        """Submit; answer 202 with the pending job (the contract), or, when asked: the job's
        current state for an idempotent repeat, the finished job for ``Prefer: wait``."""
        wait = preferences(scope["headers"]).get("wait")  # never ?wait: the query is the job's
        headers: dict[str, str] = {}
        try:
            job = await self.service.submit(spec, scope, receive)
        except IdempotentReplay as replay:
            job = replay.job
            headers["Idempotent-Replayed"] = "true"
        if wait is not None:
            job = await self.ext.wait(job, preferred_wait(wait, self.config.max_wait_seconds), receive)
        headers["Location"] = self.routes.poll_url(spec, job.id, scope.get("root_path", ""))
        if respond_async:
            headers["Preference-Applied"] = "respond-async"
        await self.send_job(job, send, headers)

    async def send_job(self, job: Job, send: Any, headers: dict[str, str] | None = None) -> None:
        """The job JSON: 200 once it has ended, else 202 with ``Retry-After``."""
        if job.status.terminal:
            await send_json(send, 200, job.to_public(), headers)
        else:
            await send_json(
                send, 202, job.to_public(), {**(headers or {}), "Retry-After": str(self.config.retry_after)}
            )

    async def send_raw(self, job: Job, send: Any) -> None:
        """The synchronous endpoint's own response; for a job that ended without one (timeout,
        crash, cancel), its error with its status code."""
        if job.raw_response is None:
            if job.error is None:  # a result stored before raw results existed
                raise not_found()
            await send_json(send, job.status_code or 500, job.error)
            return
        await send_bytes(send, *rebuild_raw(job.raw_response, job.result))
