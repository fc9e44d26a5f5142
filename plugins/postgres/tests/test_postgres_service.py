"""The middleware on the Postgres store, in-process (httpx's ASGI transport) against a real
PostgreSQL: 503 while the server is unreachable and recovery without a restart of the service;
nothing secret in the database or the logs; an operator's broken schema is a 503, not a 500; a
swept orphan reaches the ``job_finished`` observers; the core's owner-secret warning for a shared store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
import structlog.testing
from bifrost_async import AsyncJobsMiddleware, Job, JobStatus, hookimpl
from bifrost_async.testing import FakeClock, make_job, processing
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bifrost_async_postgres import PostgresJobStore
from bifrost_async_postgres.server import PostgresServer

SUBMIT = "/v1/async/chat/completions"
BODY = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "BODY-MARKER-7f3a"}]}
SECRET = "Bearer sk-test-SECRET-51c2"
#: A password in the store URL (trust authentication ignores it); it must never reach a log line.
PASSWORD = "pw-SECRET-9d41"


async def chat(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"choices": [{"message": {"content": "hello"}}]})


def with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{PASSWORD}@")


def wrapped(url: str, schema: str, **more: Any) -> AsyncJobsMiddleware:
    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    options = {"url": with_password(url), "schema": schema, "sweep_interval": 0, "purge_interval": 0}
    return AsyncJobsMiddleware(app, store="postgres", store_options=options, **more)


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[[AsyncJobsMiddleware], httpx.AsyncClient]]:
    opened: list[tuple[AsyncJobsMiddleware, httpx.AsyncClient]] = []

    def make(app: AsyncJobsMiddleware) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        opened.append((app, client))
        return client

    yield make
    for app, client in opened:
        await client.aclose()
        await app.shutdown()


async def eventually(check: Callable[[], Awaitable[Any]], what: str, deadline: float = 20.0) -> Any:
    """Await ``check()`` until it returns something truthy, within ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not (result := await check()):
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:g} s waiting for {what}")
        await asyncio.sleep(0.02)
    return result


async def completed(client: httpx.AsyncClient, job_id: str, **kwargs: Any) -> httpx.Response:
    async def poll() -> httpx.Response | None:
        response = await client.get(f"{SUBMIT}/{job_id}", **kwargs)
        assert response.status_code in (200, 202), response.text
        return response if response.status_code == 200 else None

    response: httpx.Response = await eventually(poll, f"job {job_id} to finish")
    return response


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert "unavailable" in response.json()["error"]["message"]


async def test_503_while_postgres_is_down_then_recovers_by_itself(
    own_postgres: PostgresServer, client_for: Callable[[AsyncJobsMiddleware], httpx.AsyncClient]
) -> None:
    client = client_for(wrapped(own_postgres.url, "svc"))  # not started yet: startup must not fail
    with structlog.testing.capture_logs() as logs:
        assert_unavailable(await client.post(SUBMIT, json=BODY))
        assert_unavailable(await client.get(f"{SUBMIT}/1f97b465-4c1e-4a4b-9d2e-6c3b8e0f2a11"))

        own_postgres.start()  # no restart of the service: the schema is migrated on first use
        first = await client.post(SUBMIT, json=BODY)
        assert first.status_code == 202, first.text
        assert (await completed(client, first.json()["id"])).json()["status"] == "completed"

        own_postgres.stop()  # the pool now holds connections to a dead server
        assert_unavailable(await client.get(f"{SUBMIT}/{first.json()['id']}"))
        assert_unavailable(await client.post(SUBMIT, json=BODY))

        own_postgres.start()  # PostgreSQL keeps its data across the restart
        assert (await client.get(f"{SUBMIT}/{first.json()['id']}")).status_code == 200
        again = await client.post(SUBMIT, json=BODY)
        assert again.status_code == 202, again.text
        assert (await completed(client, again.json()["id"])).json()["result"]["choices"]
    assert any(entry["event"] == "postgres_store.unavailable" for entry in logs)
    assert PASSWORD not in str(logs)


async def test_the_database_holds_no_credential_and_no_request_body(
    postgres_url: str, schema: str, client_for: Callable[[AsyncJobsMiddleware], httpx.AsyncClient]
) -> None:
    client = client_for(wrapped(postgres_url, schema))
    with structlog.testing.capture_logs() as logs:
        submitted = await client.post(SUBMIT, json=BODY, headers={"Authorization": SECRET})
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        await completed(client, job_id, headers={"Authorization": SECRET})
        assert (await client.get(f"{SUBMIT}/{job_id}")).status_code == 404  # another owner
    conn = await asyncpg.connect(postgres_url)
    try:
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
        dump = ""
        for table in tables:
            rows = await conn.fetch(f'SELECT t::text AS row FROM "{schema}"."{table["tablename"]}" t')
            dump += "".join(row["row"] for row in rows)
    finally:
        await conn.close()
    assert job_id in dump
    assert "SECRET" not in dump and "sk-test" not in dump
    assert "BODY-MARKER" not in dump
    assert "sk-test-SECRET" not in str(logs) and "BODY-MARKER" not in str(logs)


async def test_a_broken_schema_is_503_not_500(
    postgres_url: str, schema: str, client_for: Callable[[AsyncJobsMiddleware], httpx.AsyncClient]
) -> None:
    client = client_for(wrapped(postgres_url, schema))
    submitted = await client.post(SUBMIT, json=BODY)
    assert submitted.status_code == 202, submitted.text
    await completed(client, submitted.json()["id"])
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f'DROP TABLE "{schema}".jobs CASCADE')  # an operator's mistake
    finally:
        await conn.close()
    with structlog.testing.capture_logs() as logs:
        assert_unavailable(await client.get(f"{SUBMIT}/{submitted.json()['id']}"))
        assert_unavailable(await client.post(SUBMIT, json=BODY))
    errors = [entry for entry in logs if entry["event"] == "postgres_store.error"]
    assert errors and errors[0]["error_type"] == "UndefinedTableError"


async def test_swept_orphan_reaches_job_finished_observers(
    postgres_url: str, schema: str, client_for: Callable[[AsyncJobsMiddleware], httpx.AsyncClient]
) -> None:
    """A job left ``processing`` by a dead process, which nobody polls, is failed by this
    process's sweep and announced to its observers (webhooks, metrics) like one failed on poll."""
    finished_jobs: list[Job] = []

    class Observer:
        @hookimpl
        def job_finished(self, job: Job) -> None:
            finished_jobs.append(job)

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    options = {"url": postgres_url, "schema": schema, "sweep_interval": 0.05}
    middleware = AsyncJobsMiddleware(app, store="postgres", store_options=options, plugins=[Observer()])
    client_for(middleware)
    await middleware.startup()
    assert isinstance(middleware.store, PostgresJobStore)
    clock = FakeClock(start=time.time() - 60)  # the dead process ran this job a minute ago
    orphan = processing(make_job(clock, worker="dead-host:1"), clock)
    orphan.lease_expires_at = clock() + 1.5
    await middleware.store.create(orphan)
    swept = await eventually(lambda: asyncio.sleep(0, finished_jobs), "the sweep to fail the orphan")
    assert [job.id for job in swept] == [orphan.id]
    assert swept[0].status is JobStatus.FAILED and swept[0].error is not None
    assert swept[0].error["error"]["code"] == "worker_lost"


@pytest.mark.parametrize("secret", [None, "a-long-random-owner-secret"])
async def test_startup_warns_when_the_store_has_no_owner_secret(
    secret: str | None,
    postgres_url: str,
    schema: str,
    client_for: Callable[[AsyncJobsMiddleware], httpx.AsyncClient],
) -> None:
    client = client_for(wrapped(postgres_url, schema, owner_secret=secret))
    with structlog.testing.capture_logs() as logs:
        assert (await client.get(f"{SUBMIT}/1f97b465-4c1e-4a4b-9d2e-6c3b8e0f2a11")).status_code == 404
    warnings = [entry for entry in logs if entry["event"] == "async_jobs.owner_secret_missing"]
    if secret is None:
        assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"
    else:
        assert warnings == []
        assert not any(secret in str(entry) for entry in logs)
    assert PASSWORD not in str(logs)
