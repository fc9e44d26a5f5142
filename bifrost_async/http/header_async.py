"""Header-driven async on provider routes (Bifrost's ``x-bf-async`` / ``x-bf-async-id``).

``POST /v1/responses`` (or an Anthropic ``/v1/messages`` route, see :func:`default_routes`) with
``x-bf-async: true`` becomes a job and answers **200** at once with a provider-shaped body
whose ``id`` is the job id; the same ``POST`` with ``x-bf-async-id: <id>`` retrieves it (the
body is never read). The job is an ordinary ``responses`` job: it replays to the path the
client used, without our headers, and is also pollable on ``/v1/async/responses/{id}``.

The middleware asks :meth:`HeaderAsync.match` on every request; it costs one method compare and
one set lookup unless the path is one of the routes, so the pass-through stays as fast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from bifrost_async.core.errors import AsyncJobError, not_found
from bifrost_async.core.jobs import Job, JobStatus
from bifrost_async.core.response import rebuild_raw
from bifrost_async.http.respond import send_bytes, send_json
from bifrost_async.service.idempotency import IdempotentReplay
from bifrost_async.service.jobs_service import JobService
from bifrost_async.service.routes import RouteSpec, RouteTable

Family = Literal["openai", "anthropic"]
Action = Literal["submit", "retrieve", "unsupported"]

ASYNC_HEADER = b"x-bf-async"
ASYNC_ID_HEADER = b"x-bf-async-id"
#: Values of ``x-bf-async`` that count as absent (Bifrost treats any non-empty value as true).
FALSE_VALUES = frozenset({b"", b"false", b"0", b"no"})
#: The job metadata key that remembers which provider's route a job was submitted on.
FAMILY_KEY = "header_async"
UNSUPPORTED_MESSAGE = "async operation is not supported on this route"
STREAM_MESSAGE = "streaming is not supported for async requests"
#: Integration prefixes of Bifrost's routers.
OPENAI_PREFIXES = ("/openai", "/litellm", "/langchain", "/pydanticai")
ANTHROPIC_PREFIXES = ("/anthropic", "/litellm", "/langchain", "/pydanticai", "/cursor")


def default_routes() -> dict[str, Family]:
    """Bifrost's header-async routes plus the unprefixed ``/v1/responses`` and ``/v1/messages``."""
    routes: dict[str, Family] = {"/v1/responses": "openai", "/v1/messages": "anthropic"}
    for prefix in OPENAI_PREFIXES:
        for tail in ("/v1/responses", "/responses", "/openai/responses"):
            routes[prefix + tail] = "openai"
    for prefix in ANTHROPIC_PREFIXES:
        routes[prefix + "/v1/messages"] = "anthropic"
    return routes


def _inference_paths(table: RouteTable) -> set[str]:
    """Synchronous inference paths, bare and under every integration prefix (with and without
    ``/v1``, as Bifrost's OpenAI router serves both): ``x-bf-async`` there is a 400."""
    paths: set[str] = set()
    for spec in table:
        short = spec.sync_path[3:] if spec.sync_path.startswith("/v1/") else spec.sync_path
        for prefix in ("", *OPENAI_PREFIXES, *ANTHROPIC_PREFIXES):
            paths.update({prefix + spec.sync_path, prefix + short})
    return paths


class HeaderAsync:
    """Routes and answers of the header mode, for one middleware."""

    def __init__(self, table: RouteTable, overrides: Mapping[str, str] = {}) -> None:
        routes: dict[str, str] = {**default_routes(), **overrides}
        self.routes: dict[str, Family] = {p: f for p, f in routes.items() if f in ("openai", "anthropic")}  # type: ignore[misc]
        self.spec: RouteSpec | None = table.by_type.get("responses")
        # a route turned "off" is passed through untouched, not refused
        self.unsupported = frozenset(_inference_paths(table) - set(routes))
        self._paths = frozenset(self.routes) | self.unsupported if self.spec is not None else frozenset()

    def match(self, path: str, scope: dict[str, Any]) -> tuple[Action, str] | None:
        """What to do with this request: ``None`` (not ours: pass it through), or the action
        and, for a retrieve, the job id. ``x-bf-async-id`` wins over ``x-bf-async``; an empty
        ``x-bf-async-id`` and ``x-bf-async: false``/``0``/``no`` count as absent."""
        if path not in self._paths or scope["method"] != "POST":
            return None
        wants, job_id = False, ""
        for name, value in scope["headers"]:
            if name == ASYNC_ID_HEADER and not job_id:
                job_id = value.strip().decode("latin-1")
            elif name == ASYNC_HEADER and not wants:
                wants = value.strip().lower() not in FALSE_VALUES
        if not (wants or job_id):
            return None
        if path in self.unsupported:
            return "unsupported", ""
        return ("retrieve", job_id) if job_id else ("submit", "")

    async def handle(
        self,
        action: tuple[Action, str],
        path: str,
        service: JobService,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
    ) -> None:
        """Answer a request :meth:`match` claimed, every error in the route's own shape."""
        family: Family = self.routes.get(path, "openai")
        try:
            kind, job_id = action
            if kind == "unsupported":
                raise AsyncJobError(400, UNSUPPORTED_MESSAGE, code="async_not_supported")
            assert self.spec is not None
            if kind == "submit":
                job = await self._submit(path, family, service, scope, receive)
                await send_json(send, 200, pending_body(job, family))
                return
            job = await service.poll(self.spec, job_id, scope)
            if job.metadata.get(FAMILY_KEY, "openai") != family:
                raise not_found()  # we do not convert between providers' shapes
            await self._send_job(job, family, send)
        except AsyncJobError as exc:
            await send_json(send, exc.status_code, error_in_shape(exc.body(), family), exc.headers)

    async def _submit(
        self, path: str, family: Family, service: JobService, scope: dict[str, Any], receive: Any
    ) -> Job:
        assert self.spec is not None
        spec = dataclasses.replace(self.spec, sync_path=path)  # the job replays where it was sent
        try:
            return await service.submit(spec, scope, receive, metadata={FAMILY_KEY: family})
        except IdempotentReplay as replay:
            return replay.job
        except AsyncJobError as exc:
            if exc.param == spec.stream_field and exc.status_code == 400:
                exc.message = STREAM_MESSAGE  # Bifrost's words for every route
            raise

    async def _send_job(self, job: Job, family: Family, send: Any) -> None:
        if not job.status.terminal:
            await send_json(send, 200, pending_body(job, family))
        elif job.status is JobStatus.COMPLETED and job.raw_response is not None:
            await send_bytes(send, *rebuild_raw(job.raw_response, job.result))
        elif job.status is JobStatus.COMPLETED:
            await send_json(send, 200, job.result)
        else:
            error = job.error or {"error": {"message": "the job failed"}}
            await send_json(send, job.status_code or 500, error_in_shape(error, family))


def _model(job: Job) -> str:
    fields = job.extra_fields
    name = str(fields.get("model_requested") or "")
    provider = fields.get("provider")
    return f"{provider}/{name}" if provider else name


def pending_body(job: Job, family: Family) -> dict[str, Any]:
    """The provider-shaped answer for a job that has not ended: an OpenAI Responses object
    (``status`` pending or processing) or an Anthropic Messages object; ``id`` is the job id."""
    if family == "anthropic":
        return {"id": job.id, "type": "message", "role": "assistant", "content": [], "model": _model(job)}
    return {
        "id": job.id,
        "object": "response",
        "created_at": int(job.created_at),
        "status": job.status.value,
        "model": _model(job),
        "output": [],
    }


def error_in_shape(error: dict[str, Any], family: Family) -> dict[str, Any]:
    """A Bifrost error object as the route shows errors: as is on OpenAI routes, Anthropic's
    ``{"type": "error", "error": {"type", "message"}}`` on Anthropic routes."""
    if family == "openai":
        return error
    inner = error.get("error") or {}
    return {
        "type": "error",
        "error": {"type": str(inner.get("type") or "api_error"), "message": str(inner.get("message", ""))},
    }
