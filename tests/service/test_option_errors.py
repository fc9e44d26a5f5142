"""The middleware refuses a bad option at construction, in one line that names it (issue 12.4),
and a startup that fails after the wrapped app started still lets that app close what it opened."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from bifrost_async import AsyncJobsMiddleware, hookimpl
from bifrost_async.builtin.memory import memory_store
from bifrost_async.proxy.app import ProxyApp, build_proxy
from bifrost_async.service.config import AsyncJobsConfig
from bifrost_async.store import StoreContext


def app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("never called")


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"concurrency": "8"}, ValueError, r"^concurrency: must be a whole number, got '8'$"),
        ({"concurrency": True}, ValueError, r"^concurrency: must be a whole number"),
        ({"job_timeout": float("nan")}, ValueError, r"^job_timeout: must be a finite number"),
        ({"poll_pacing": -1}, ValueError, r"^poll_pacing: must not be negative, got -1$"),
        ({"poll_pacing": "1"}, ValueError, r"^poll_pacing: must be a number of seconds"),
        ({"retry_after_max": 0}, ValueError, r"^retry_after_max: must be positive, got 0$"),
        (
            {"retry_after_max": 86401},
            ValueError,
            r"^retry_after_max: must be at most 86400 \(a day\), got 86401$",
        ),
        (
            {"retry_after": 5, "retry_after_max": 2},
            ValueError,
            r"^retry_after_max: 2 must not be below retry_after \(5\)$",
        ),
        ({"default_ttl": 10, "max_ttl": 5}, ValueError, r"^default_ttl: 10 must not exceed max_ttl \(5\)$"),
        (
            {"route_overrides": {"transcriptions": "/api/transcribe"}},
            ValueError,
            r"^route_overrides: unknown request type 'transcriptions'; request types: .*transcription",
        ),
        ({"store": "mongo"}, ValueError, r"^store: unknown store 'mongo'; registered: memory"),
        ({"queue": "kafka"}, ValueError, r"^queue: unknown queue 'kafka'; registered: local"),
        ({"queue": ""}, ValueError, r"^queue: must be a non-empty string"),
        ({"max_attempts": 0}, ValueError, r"^max_attempts: must be positive, got 0$"),
        (
            {"max_attempts_by_type": {"nope": 1}},
            ValueError,
            r"^max_attempts_by_type: unknown request type 'nope'",
        ),
        ({"max_attempts_by_type": {"embedding": 0}}, ValueError, r"^max_attempts_by_type: embedding: want"),
        ({"max_attempts_by_type": "embedding"}, ValueError, r"^max_attempts_by_type: expected TYPE=N"),
        (
            {"store_options": {"colour": "blue"}},
            ValueError,
            r"^store_options: store 'memory': unknown .*colour",
        ),
        ({"store_options": {"max_bytes": -1}}, ValueError, r"^store_options: store 'memory': .*max_bytes"),
        ({"provider": "grpc"}, ValueError, r"^provider: unknown provider 'grpc'; registered: asgi, http"),
        ({"provider": "http"}, ValueError, r"^provider_options: provider 'http': .*upstream"),
        (
            {"concurency": 3},
            TypeError,
            r"unknown AsyncJobsMiddleware option\(s\): concurency; known: .*concurrency",
        ),
    ],
)
def test_bad_middleware_option_is_refused_at_construction(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as info:
        AsyncJobsMiddleware(app, **options)
    assert "\n" not in str(info.value)


def test_from_options_checks_the_same() -> None:
    with pytest.raises(ValueError, match=r"^queue_size: must be positive"):
        AsyncJobsConfig.from_options(queue_size=0)


class StoreThatCannotStart:
    """Registers ``broken``: a memory store whose ``start`` fails (Redis down, say)."""

    @hookimpl
    def register_stores(self, register: Callable[[str, Any], None]) -> None:
        def factory(context: StoreContext) -> Any:
            store = memory_store(context)

            async def start() -> None:
                raise ConnectionError("store unreachable")

            store.start = start
            return store

        register("broken", factory)


async def test_failed_startup_lets_the_proxy_close_its_upstream_session() -> None:
    """The server sends no shutdown after a failed startup; the proxy's aiohttp session, opened
    by its own startup, must still be closed (it leaked: "Unclosed client session")."""
    proxy = build_proxy("http://127.0.0.1:9", store="broken", plugins=[StoreThatCannotStart()])
    inner = proxy.app
    assert isinstance(inner, ProxyApp)
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await incoming.put({"type": "lifespan.startup"})
    await asyncio.wait_for(proxy({"type": "lifespan"}, incoming.get, send), 30)
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "store unreachable" in sent[0]["message"]
    assert not inner.upstream.is_open
