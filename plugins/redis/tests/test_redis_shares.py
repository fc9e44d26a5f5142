"""The per-owner share of the store holds across processes sharing one Redis (issue 11 item 2):
two middlewares on one real redis-server, one caller's jobs counted wherever they were sent."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from bifrost_async import AsyncJobsMiddleware
from starlette.applications import Starlette
from starlette.routing import Route
from test_redis_service import BODY, SUBMIT, chat, client_for, completed  # noqa: F401 - a fixture

A = {"authorization": "Bearer tenant-a"}
B = {"authorization": "Bearer tenant-b"}


def process(url: str) -> AsyncJobsMiddleware:
    """One service process: a share of 2 live jobs per owner in the store, no queue share."""
    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    options = {"url": url, "sweep_interval": 0}
    return AsyncJobsMiddleware(
        app, store="redis", store_options=options, owner_max_jobs=2, owner_queue_size=0
    )


async def test_one_callers_share_is_counted_across_processes(
    redis_url: str,
    client_for: Callable[[AsyncJobsMiddleware], httpx.AsyncClient],  # noqa: F811 - the imported fixture
) -> None:
    first, second = client_for(process(redis_url)), client_for(process(redis_url))
    kept = [await first.post(SUBMIT, json=BODY, headers=A), await second.post(SUBMIT, json=BODY, headers=A)]
    assert [r.status_code for r in kept] == [202, 202]
    for client in (first, second):  # each process alone holds one of its jobs: the share is shared
        refused = await client.post(SUBMIT, json=BODY, headers=A)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "owner_quota_exceeded"
        assert refused.headers["retry-after"] == "1"
    other = await second.post(SUBMIT, json=BODY, headers=B)
    assert other.status_code == 202
    assert (await completed(first, other.json()["id"], headers=B)).json()["status"] == "completed"
