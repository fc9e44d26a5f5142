"""Webhooks end to end: a real uvicorn server runs the jobs, a real aiohttp receiver checks the
Standard Webhooks signature itself and answers with scripted statuses."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from bifrost_async.webhook_delivery import DeliveryPolicy, DeliveryReport
from bifrost_async.webhooks import WebhookEndpoint, WebhooksPlugin, verify

from .helpers import build_stack

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
FAST = DeliveryPolicy(backoff_initial=0.01, backoff_max=0.05, attempt_timeout=5)


class Receiver:
    """An aiohttp server that verifies every delivery and answers from a script of statuses."""

    def __init__(self, statuses: list[int], *, hang_first: bool = False) -> None:
        self.statuses = statuses
        self.hang_first = hang_first
        self.attempts: list[dict[str, Any]] = []
        #: Set when the first delivery attempt has arrived.
        self.arrived = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        msg_id, stamp = request.headers["webhook-id"], request.headers["webhook-timestamp"]
        key = base64.b64decode(SECRET.removeprefix("whsec_"))
        expected = base64.b64encode(
            hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
        ).decode()
        signatures = [s.partition(",")[2] for s in request.headers["webhook-signature"].split()]
        self.attempts.append(
            {
                "valid": any(hmac.compare_digest(expected, s) for s in signatures),
                "id": msg_id,
                "fresh": abs(time.time() - int(stamp)) < 300,
                "body": json.loads(body),
                "headers": dict(request.headers),
                "raw": body,
            }
        )
        self.arrived.set()
        if self.hang_first and len(self.attempts) == 1:
            await asyncio.Event().wait()  # never answers: the attempt timeout must cut it off
        status = self.statuses[min(len(self.attempts) - 1, len(self.statuses) - 1)]
        return web.Response(status=status, text="ok" if status < 300 else "nope")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, handler_cancellation=True)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"


@pytest.fixture
async def receiver_factory() -> AsyncIterator[Any]:
    receivers: list[Receiver] = []

    async def make(statuses: list[int], **kwargs: Any) -> Receiver:
        receiver = Receiver(statuses, **kwargs)
        await receiver.start()
        receivers.append(receiver)
        return receiver

    yield make
    for receiver in receivers:
        assert receiver.runner is not None
        await receiver.runner.cleanup()


class Reports:
    """``on_delivery`` target: tests wait on it instead of sleeping."""

    def __init__(self) -> None:
        self.reports: list[DeliveryReport] = []
        self.changed = asyncio.Event()

    def __call__(self, report: DeliveryReport) -> None:
        self.reports.append(report)
        self.changed.set()

    async def wait_for(self, job_id: str) -> DeliveryReport:
        async def find() -> DeliveryReport:
            while True:
                for report in self.reports:
                    if report.job_id == job_id:
                        return report
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(find(), 20)


async def webhook_stack(serve: Any, url: str, policy: DeliveryPolicy = FAST, **kwargs: Any) -> Any:
    reports = Reports()
    endpoints = {
        "billing": WebhookEndpoint(url=url, secret=SECRET),
        "paused": WebhookEndpoint(url=url, secret=SECRET, enabled=False),
    }
    plugin = WebhooksPlugin(endpoints, policy=policy, on_delivery=reports, **kwargs)
    stack = await build_stack(serve, plugins=(plugin,))
    return stack, reports


async def test_signed_event_retried_after_two_500s(
    serve: Any, http: httpx.AsyncClient, receiver_factory: Any
) -> None:
    receiver = await receiver_factory([500, 500, 200])
    stack, reports = await webhook_stack(serve, receiver.url, public_url="https://api.example.test")
    submitted = await stack.submit(
        http,
        "embeddings",
        json={"model": "openai/m", "input": "x"},
        headers={"x-bf-async-webhook": "billing"},
    )
    assert submitted.status_code == 202
    job_id = submitted.json()["id"]
    report = await reports.wait_for(job_id)
    assert (report.outcome, report.attempts, report.status_code) == ("delivered", 3, 200)

    assert len(receiver.attempts) == 3
    assert all(a["valid"] and a["fresh"] for a in receiver.attempts)
    assert {a["id"] for a in receiver.attempts} == {f"msg_{job_id}"}  # one id across retries
    event = receiver.attempts[-1]["body"]
    assert event["type"] == "async_job.completed"
    data = event["data"]
    assert data["job_id"] == job_id and data["request_type"] == "embedding"
    assert data["status"] == "completed" and data["status_code"] == 200
    assert data["result_url"] == f"https://api.example.test/v1/async/embeddings/{job_id}"
    assert {"created_at", "completed_at", "expires_at"} <= set(data)
    assert data["result"]["echo"]["input"] == "x"  # small: inline
    # the library's own verifier agrees with the receiver
    assert verify(SECRET, receiver.attempts[-1]["headers"], receiver.attempts[-1]["raw"])
    assert not verify(SECRET, receiver.attempts[-1]["headers"], receiver.attempts[-1]["raw"] + b" ")


async def test_failed_job_event_and_result_over_cap_is_not_inline(
    serve: Any, http: httpx.AsyncClient, receiver_factory: Any
) -> None:
    receiver = await receiver_factory([204])
    stack, reports = await webhook_stack(serve, receiver.url, inline_max_bytes=200)
    headers = {"x-bf-async-webhook": "billing"}
    failed = await stack.submit(http, "embeddings", json={"model": "test/error"}, headers=headers)
    ok = await stack.submit(http, "embeddings", json={"model": "m", "input": "y" * 500}, headers=headers)
    for response in (failed, ok):
        assert (await reports.wait_for(response.json()["id"])).outcome == "delivered"
    events = {a["body"]["data"]["job_id"]: a["body"] for a in receiver.attempts}
    failed_event = events[failed.json()["id"]]
    assert failed_event["type"] == "async_job.failed"
    assert failed_event["data"]["status"] == "failed" and failed_event["data"]["status_code"] == 400
    ok_data = events[ok.json()["id"]]["data"]
    assert "result" not in ok_data and ok_data["result_url"] == f"/v1/async/embeddings/{ok.json()['id']}"


async def test_unknown_or_disabled_webhook_fails_the_submit(
    serve: Any, http: httpx.AsyncClient, receiver_factory: Any
) -> None:
    receiver = await receiver_factory([200])
    stack, _ = await webhook_stack(serve, receiver.url)
    for name, word in (("nope", "unknown"), ("paused", "disabled")):
        response = await stack.submit(
            http, "embeddings", json={"model": "m", "input": "x"}, headers={"x-bf-async-webhook": name}
        )
        assert response.status_code == 400
        assert response.json()["error"]["message"] == f"{word} webhook '{name}'"
        assert response.json()["error"]["param"] == "x-bf-async-webhook"
    assert stack.recorder.events == []  # no job was created
    assert receiver.attempts == []


async def test_attempts_exhausted_and_attempt_timeout(
    serve: Any, http: httpx.AsyncClient, receiver_factory: Any
) -> None:
    receiver = await receiver_factory([503], hang_first=True)
    policy = DeliveryPolicy(max_attempts=3, backoff_initial=0.01, backoff_max=0.02, attempt_timeout=1.0)
    stack, reports = await webhook_stack(serve, receiver.url, policy=policy)
    submitted = await stack.submit(
        http, "embeddings", json={"model": "m", "input": "x"}, headers={"x-bf-async-webhook": "billing"}
    )
    report = await reports.wait_for(submitted.json()["id"])
    # the first attempt hung and was cut off by its timeout; the other two got 503
    assert (report.outcome, report.attempts, report.status_code) == ("failed", 3, 503)
    assert len(receiver.attempts) == 3


async def test_slow_receiver_never_holds_a_worker(
    serve: Any, http: httpx.AsyncClient, receiver_factory: Any
) -> None:
    """With one worker and a receiver that never answers, jobs still run one after another."""
    receiver = await receiver_factory([200], hang_first=True)
    reports = Reports()
    plugin = WebhooksPlugin(
        {"billing": WebhookEndpoint(url=receiver.url, secret=SECRET)},
        policy=DeliveryPolicy(attempt_timeout=60, shutdown_grace=0.1),
        on_delivery=reports,
    )
    stack = await build_stack(serve, plugins=(plugin,), concurrency=1)
    first = await stack.submit(
        http, "embeddings", json={"model": "m", "input": "x"}, headers={"x-bf-async-webhook": "billing"}
    )
    second = await stack.submit(http, "embeddings", json={"model": "m", "input": "x"})
    await stack.recorder.wait("finished", second.json()["id"])
    await asyncio.wait_for(receiver.arrived.wait(), 20)
    assert plugin.dispatcher.pending == 1  # still hanging on the first event
    await stack.server.stop()  # shutdown abandons it after the grace, and says so
    assert (await reports.wait_for(first.json()["id"])).outcome == "dropped"


def test_endpoint_config_rejects_bad_secret_without_quoting_it() -> None:
    with pytest.raises(ValueError) as info:
        WebhookEndpoint(url="http://127.0.0.1:1/x", secret="whsec_not*base64")
    assert "not*base64" not in str(info.value)
    assert "whsec" not in repr(WebhookEndpoint(url="http://127.0.0.1:1/x", secret=SECRET))
    with pytest.raises(ValueError, match="http"):
        WebhookEndpoint(url="file:///etc/passwd", secret=SECRET)
