"""The core hooks the webhooks and metrics plugins stand on: validate_submit, job metadata, and
the async_jobs_startup / async_jobs_shutdown lifecycle pair."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from bifrost_async import AsyncJobError, AsyncJobsMiddleware, Job, JobStatus, hookimpl
from bifrost_async.core.capture import header_value
from tests.apps import make_app
from tests.helpers import build_stack


class Tagger:
    """Refuses submits with ``x-deny``; tags the others with their ``x-tag`` header."""

    def __init__(self) -> None:
        self.started: list[Any] = []
        self.stopped: list[Any] = []

    @hookimpl
    def validate_submit(self, headers: list[tuple[bytes, bytes]], request_type: str) -> dict[str, str] | None:
        if header_value(headers, b"x-deny") is not None:
            raise AsyncJobError(400, f"denied for {request_type}", code="denied")
        tag = header_value(headers, b"x-tag")
        return {"tagger.tag": tag.decode()} if tag else None

    @hookimpl
    async def async_jobs_startup(self, middleware: Any) -> None:
        await asyncio.sleep(0)
        self.started.append(middleware)

    @hookimpl
    def async_jobs_shutdown(self, middleware: Any) -> None:
        self.stopped.append(middleware)


async def test_validate_submit_refuses_before_a_job_exists(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve, plugins=(Tagger(),))
    refused = await stack.submit(
        http, "embeddings", json={"model": "m", "input": "x"}, headers={"x-deny": "1"}
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == "denied for embedding"
    assert stack.recorder.events == []
    # body validation comes first: a missing model is reported, not the plugin's refusal
    no_model = await stack.submit(http, "embeddings", json={"input": "x"}, headers={"x-deny": "1"})
    assert no_model.status_code == 400 and "model" in no_model.json()["error"]["message"]


async def test_metadata_is_stored_and_reaches_observers(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve, plugins=(Tagger(),))
    submitted = await stack.submit(
        http, "embeddings", json={"model": "m", "input": "x"}, headers={"x-tag": "blue"}
    )
    finished = await stack.recorder.wait("finished", submitted.json()["id"])
    assert finished.metadata == {"tagger.tag": "blue"}
    assert stack.middleware.store is not None
    stored = await stack.middleware.store.get(finished.id)
    assert stored is not None and stored.metadata == {"tagger.tag": "blue"}
    polled = await http.get(f"{stack.url}/v1/async/embeddings/{finished.id}")
    assert "metadata" not in polled.json()  # never shown to clients


def test_metadata_survives_records() -> None:
    job = Job(id="a", request_id="r", request_type="t", status=JobStatus.PENDING, created_at=1.0, ttl=5)
    job.metadata = {"webhook": "billing"}
    assert Job.from_record(job.to_record()).metadata == {"webhook": "billing"}


async def test_lifecycle_hooks_run_once_each(serve: Any) -> None:
    class Broken:
        @hookimpl
        def async_jobs_shutdown(self, middleware: Any) -> None:
            raise RuntimeError("plugin bug at shutdown")

    tagger = Tagger()
    middleware = AsyncJobsMiddleware(make_app(), plugins=[Broken(), tagger])
    server = await serve(middleware)
    assert tagger.started == [middleware]
    await server.stop()
    # a failing plugin's shutdown does not keep the others from closing
    assert tagger.stopped == [middleware] and middleware.store is not None
