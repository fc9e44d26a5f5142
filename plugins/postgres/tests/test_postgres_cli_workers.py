"""``bifrost-async serve --workers 2 --store postgres``: uvicorn's supervisor runs two worker
processes on one port, both on one real PostgreSQL (the store is registered ``shared=True``, so
``--workers`` accepts it); jobs submitted and polled over fresh connections (so they land on
either worker) are all found and complete, and the schema was migrated once although both
workers started together."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp import web
from tests.proxy_support import run_proxy

from bifrost_async_postgres import migrations

SUBMIT = "/v1/async/embeddings"


async def embeddings(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response({"object": "list", "data": [{"embedding": [0.5]}], "echo": body["input"]})


def started_workers(logs: str) -> set[str]:
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    return {str(e.get("worker")) for e in events if e.get("event") == "async_jobs.started"}


@pytest.mark.slow
async def test_two_workers_on_one_port_share_the_jobs(
    aiohttp_server: Any, postgres_url: str, schema: str
) -> None:
    app = web.Application()
    app.router.add_post("/v1/embeddings", embeddings)
    upstream = await aiohttp_server(app)
    args = ["--workers", "2", "--store", "postgres", "--store-option", f"url={postgres_url}"]
    args += ["--store-option", f"schema={schema}", "--owner-secret", "same-on-both"]
    async with (
        run_proxy(f"http://127.0.0.1:{upstream.port}", *args) as proxy,
        httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as client,
    ):
        end = time.monotonic() + 60
        while len(started_workers(proxy.logs())) < 2:  # both workers up (a bound on a hang)
            assert time.monotonic() < end, proxy.logs()
            await asyncio.sleep(0.05)
        # a fresh connection per request, so the kernel spreads them over both workers
        ids = []
        for n in range(20):
            submitted = await client.post(
                f"{proxy.url}{SUBMIT}", json={"model": "openai/text-embedding-3-small", "input": f"i{n}"}
            )
            assert submitted.status_code == 202, submitted.text
            ids.append(submitted.json()["id"])
        for n, job_id in enumerate(ids):
            for _ in range(3):  # every poll, on any worker, finds the job
                answer = await client.get(f"{proxy.url}{SUBMIT}/{job_id}", params={"wait": "20"})
                assert answer.status_code == 200, answer.text
                assert answer.json()["result"]["echo"] == f"i{n}"
    conn = await asyncpg.connect(postgres_url)
    try:
        versions = await conn.fetch(f'SELECT version FROM "{schema}".schema_version ORDER BY version')
    finally:
        await conn.close()
    assert [row["version"] for row in versions] == [m.version for m in migrations.migrations()]
