"""The endpoints: every answer the middleware gives itself, one method per route and method.

Submit and poll answer as the Bifrost contract has them, plus the opt-in extensions
(docs/EXTENSIONS.md): list, long-poll, cancel/delete, raw result, idempotent submit, and
``Prefer: respond-async`` on a synchronous route; Bifrost's header-driven async, the OpenAPI
document and the webhook admin API are handed to their modules. The
:class:`~bifrost_async.http.router.Router` picks the method; the middleware builds one
:class:`JobEndpoints` and binds it to the service when that starts.

A request without any of the new headers, parameters or methods gets exactly the contract's
answer: the branches below only differ when the client asked.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from bifrost_async.core.errors import AsyncJobError, not_found
from bifrost_async.core.estimate import RetryHints
from bifrost_async.core.jobs import Job
from bifrost_async.core.response import rebuild_raw
from bifrost_async.core.store import StoreError
from bifrost_async.http.extensions import JobExtensions
from bifrost_async.http.header_async import HeaderAsync
from bifrost_async.http.openapi import openapi_document
from bifrost_async.http.poll_answers import PollAnswers, send_answer
from bifrost_async.http.respond import send_bytes, send_json
from bifrost_async.service.config import AsyncJobsConfig
from bifrost_async.service.idempotency import IdempotentReplay
from bifrost_async.service.jobs_service import JobService
from bifrost_async.service.prefer import preferences, preferred_wait, wait_seconds
from bifrost_async.service.routes import RouteSpec, RouteTable

if TYPE_CHECKING:
    import pluggy

    from bifrost_async.http.router import Match


class JobEndpoints:
    """Answers requests the router matched; one per middleware, bound to its service at startup."""

    def __init__(
        self, routes: RouteTable, header_async: HeaderAsync, pm: pluggy.PluginManager, config: AsyncJobsConfig
    ) -> None:
        self.routes = routes
        self.header_async_routes = header_async
        self.pm = pm
        self.config = config
        self._service: JobService | None = None
        self._ext: JobExtensions | None = None
        self._hints: RetryHints | None = None
        #: Each job's poll answer, encoded once per status, and when it was last given
        #: (:mod:`bifrost_async.http.poll_answers`).
        self.answers = PollAnswers()

    def bind(self, service: JobService) -> None:
        """Answer with ``service`` from now on (called once the store and runner have started)."""
        self._service = service
        self._ext = JobExtensions(service)
        runner = service.runner
        self._hints = RetryHints(
            runner.run_times,
            runner.queue.position,
            concurrency=self.config.concurrency,
            clock=self.config.clock,
            floor=self.config.retry_after,
            cap=self.config.retry_after_max,
        )

    @property
    def service(self) -> JobService:
        assert self._service is not None, "the middleware starts the service before a request needs it"
        return self._service

    @property
    def hints(self) -> RetryHints:
        """A 202's ``Retry-After``, from the runner's run times and the queue's places."""
        assert self._hints is not None, "the middleware starts the service before a request needs it"
        return self._hints

    @property
    def ext(self) -> JobExtensions:
        assert self._ext is not None, "the middleware starts the service before a request needs it"
        return self._ext

    # -- the async routes ----------------------------------------------------------------------

    async def list_jobs(self, match: Match, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert match.spec is not None
        await send_json(send, 200, await self.ext.list_page(match.spec, scope))

    async def submit(self, match: Match, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert match.spec is not None
        await self._submit(
            match.spec, preferences(scope["headers"]), scope, receive, send, respond_async=False
        )

    async def respond_async(self, match: Match, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """``Prefer: respond-async`` on a synchronous route: submit it as a job (RFC 7240)."""
        assert match.spec is not None and match.prefer is not None
        await self._submit(match.spec, match.prefer, scope, receive, send, respond_async=True)

    async def poll(self, match: Match, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The contract's poll. The service checks every poll (owner, type, expiry) on the job
        as stored now; the answer's bytes come from :attr:`answers` when the job's status has not
        changed since it was last encoded, and an early poll of an unfinished job is paced
        (``AsyncJobsConfig.poll_pacing``) unless it asked for a long-poll itself."""
        assert match.spec is not None and match.job_id is not None
        seconds = wait_seconds(scope, self.config.max_wait_seconds)
        job = await self.service.poll(match.spec, match.job_id, scope)
        if seconds > 0:
            job = await self.ext.wait(job, seconds, receive)
        elif not job.status.terminal and self.config.poll_pacing > 0:
            job = await self._paced(job)
        now = asyncio.get_running_loop().time()
        hint = self.hints.header(job) if not job.status.terminal else b""
        await send_answer(send, *self.answers.answer(job, hint, now))

    async def result(self, match: Match, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """``GET .../{id}/result``: the endpoint's own response once the job has ended."""
        job = await self._polled(match, scope, receive)
        if job.status.terminal:
            await self.send_raw(job, send)
        else:
            await self.send_job(job, send)

    async def cancel_or_delete(self, match: Match, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert match.spec is not None and match.job_id is not None
        cancelled = await self.ext.cancel_or_delete(match.spec, match.job_id, scope)
        if cancelled is None:
            self.answers.forget(match.job_id)
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send_json(send, 200, cancelled.to_public())

    async def openapi(self, match: Match, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # built per request from the live route table and plugins: cheap, and never stale
        document = openapi_document(
            self.routes, self.pm.get_plugins(), header_async=self.header_async_routes.routes
        )
        await send_json(send, 200, document)

    async def unknown_route(self, match: Match, scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise AsyncJobError(
            404, f"no async route at {match.path}", type="not_found_error", code="unknown_route"
        )

    async def not_allowed(self, match: Match, scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise AsyncJobError(
            405,
            f"method {scope['method']} is not allowed here",
            code="method_not_allowed",
            headers={"Allow": str(match.detail)},
        )

    # -- routes of other modules -----------------------------------------------------------------

    async def header_async(self, match: Match, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """``x-bf-async`` on a provider route (:mod:`bifrost_async.http.header_async`)."""
        await self.header_async_routes.handle(match.detail, match.path, self.service, scope, receive, send)

    async def webhook_admin(self, match: Match, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """``/api/webhooks`` (:mod:`bifrost_async.http.webhook_admin`)."""
        from bifrost_async.http.webhook_admin import handle  # apps without webhooks never load it

        await handle(match.detail, match.path, scope, receive, send)

    # -- answers -----------------------------------------------------------------------------------

    async def _paced(self, job: Job) -> Job:
        """Hold a poll of unfinished ``job`` that came less than ``poll_pacing`` seconds after its
        previous answer until the job ends (or is deleted) or that interval has passed; the job
        as the store has it then. A deleted or expired job is the one 404."""
        last = self.answers.last_answered(job.id)
        if last is None:
            return job
        remaining = last + self.config.poll_pacing - asyncio.get_running_loop().time()
        if remaining <= 0:
            return job
        try:
            waited = await self.service.store.wait(job.id, remaining)
        except StoreError:
            raise self.service.unavailable() from None
        if waited is None:
            raise not_found()
        return waited

    async def _polled(self, match: Match, scope: dict[str, Any], receive: Any) -> Job:
        assert match.spec is not None and match.job_id is not None
        seconds = wait_seconds(scope, self.config.max_wait_seconds)
        job = await self.service.poll(match.spec, match.job_id, scope)
        return await self.ext.wait(job, seconds, receive)

    async def _submit(
        self,
        spec: RouteSpec,
        prefer: dict[str, str],
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        *,
        respond_async: bool,
    ) -> None:
        """Submit; answer 202 with the pending job (the contract), or, when asked: the job's
        current state for an idempotent repeat, the finished job for ``Prefer: wait``."""
        wait = prefer.get("wait")  # never ?wait: the query is the job's
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
        if not job.status.terminal:  # the first poll is paced from this answer
            self.answers.answered(job.id, asyncio.get_running_loop().time())

    async def send_job(self, job: Job, send: Any, headers: dict[str, str] | None = None) -> None:
        """The job JSON: 200 once it has ended, else 202 with ``Retry-After`` (this service's
        half the time the job probably still needs, :class:`~bifrost_async.core.estimate.RetryHints`)."""
        if job.status.terminal:
            await send_json(send, 200, job.to_public(), headers)
        else:
            await send_json(
                send, 202, job.to_public(), {**(headers or {}), "Retry-After": str(self.hints.seconds(job))}
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
