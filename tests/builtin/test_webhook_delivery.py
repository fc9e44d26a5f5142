"""Webhooks end to end: a real uvicorn server runs the jobs, a real aiohttp receiver checks the
Standard Webhooks signature itself and answers with scripted statuses."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from bifrost_async.builtin.webhooks.delivery import DeliveryPolicy
from bifrost_async.builtin.webhooks.plugin import WebhookEndpoint, WebhooksPlugin, verify
from bifrost_async.store import StoreUnavailable
from tests.helpers import build_stack
from tests.webhook_support import FAST, SECRET, Reports


def local(url: str, **fields: Any) -> WebhookEndpoint:
    """An endpoint on a 127.0.0.1 receiver: private, so it has to allow private networks."""
    return WebhookEndpoint(url=url, secret=SECRET, allow_private_network=True, **fields)


async def webhook_stack(
    serve: Any, endpoints: dict[str, WebhookEndpoint], policy: DeliveryPolicy = FAST, **kwargs: Any
) -> Any:
    reports = Reports()
    options = {k: kwargs.pop(k) for k in ("clock", "concurrency") if k in kwargs}
    plugin = WebhooksPlugin(endpoints, policy=policy, on_delivery=reports, **kwargs)
    stack = await build_stack(serve, plugins=(plugin,), **options)
    return stack, reports


HOOK = {"x-bf-async-webhook": "billing"}
BODY = {"model": "openai/m", "input": "x"}


async def test_event_names_headers_and_thin_payload(
    serve: Any, http: httpx.AsyncClient, receiver_factory: Any
) -> None:
    receiver = await receiver_factory([500, 500, 200])
    billing = local(receiver.url, headers={"X-Tenant": "acme"})
    stack, reports = await webhook_stack(serve, {"billing": billing}, public_url="https://api.example.test")
    submitted = await stack.submit(http, "embeddings", json=BODY, headers=HOOK)
    job_id = submitted.json()["id"]
    report = await reports.wait_for(job_id)
    assert (report.outcome, report.attempts, report.status_code) == ("delivered", 3, 200)

    assert all(a["valid"] and a["fresh"] for a in receiver.attempts)
    assert {a["id"] for a in receiver.attempts} == {f"msg_{job_id}"}  # one id across retries
    last = receiver.attempts[-1]
    assert last["headers"]["X-Bifrost-Event"] == "async_job.completed"
    assert last["headers"]["X-Tenant"] == "acme"  # the endpoint's custom header
    assert last["headers"]["User-Agent"] == "Bifrost-Webhooks/1.0"
    event = last["body"]
    assert event["event"] == "async_job.completed" and "type" not in event
    assert set(event) == {"event", "created_at", "data"}
    data = event["data"]
    assert data["job_id"] == job_id and data["request_type"] == "embedding"
    assert data["status"] == "completed" and data["status_code"] == 200
    assert data["result_url"] == f"https://api.example.test/v1/async/embeddings/{job_id}"
    assert {"created_at", "completed_at", "result_expires_at"} <= set(data)
    assert "response" not in data and "result" not in data  # thin unless include_response
    assert verify(SECRET, last["headers"], last["raw"])
    assert not verify(SECRET, last["headers"], last["raw"] + b" ")


async def test_full_payload_only_with_include_response(
    serve: Any, http: httpx.AsyncClient, receiver_factory: Any
) -> None:
    receiver = await receiver_factory([204])
    endpoints = {
        "billing": local(receiver.url, include_response=True, max_response_payload_kbs=1),
        "thin": local(receiver.url),
    }
    stack, reports = await webhook_stack(serve, endpoints)
    failed = await stack.submit(http, "embeddings", json={"model": "test/error"}, headers=HOOK)
    small = await stack.submit(http, "embeddings", json=BODY, headers=HOOK)
    big = await stack.submit(http, "embeddings", json={"model": "m", "input": "y" * 2000}, headers=HOOK)
    thin = await stack.submit(http, "embeddings", json=BODY, headers={"x-bf-async-webhook": "thin"})
    for response in (failed, small, big, thin):
        assert (await reports.wait_for(response.json()["id"])).outcome == "delivered"
    events = {a["body"]["data"]["job_id"]: a["body"] for a in receiver.attempts}
    failed_event = events[failed.json()["id"]]
    assert failed_event["event"] == "async_job.failed"
    assert failed_event["data"]["status"] == "failed" and failed_event["data"]["status_code"] == 400
    assert failed_event["data"]["error"]["error"]["message"]
    assert events[small.json()["id"]]["data"]["response"]["echo"]["input"] == "x"
    big_data = events[big.json()["id"]]["data"]
    assert "response" not in big_data and big_data["response_omitted"] is True
    assert "response" not in events[thin.json()["id"]]["data"]


@pytest.mark.parametrize(
    ("statuses", "attempts", "outcome"),
    [
        ([404], 1, "failed"),  # any other 4xx: permanent after one attempt
        ([400], 1, "failed"),
        ([301], 1, "failed"),  # redirects are never followed
        ([408, 200], 2, "delivered"),
        ([429, 200], 2, "delivered"),
        ([502, 200], 2, "delivered"),
        ([503], 3, "failed"),  # max_retries=2: three attempts, then exhausted
    ],
)
async def test_retry_rule_per_status_class(
    serve: Any,
    http: httpx.AsyncClient,
    receiver_factory: Any,
    statuses: list[int],
    attempts: int,
    outcome: str,
) -> None:
    receiver = await receiver_factory(statuses)
    stack, reports = await webhook_stack(serve, {"billing": local(receiver.url, max_retries=2)})
    submitted = await stack.submit(http, "embeddings", json=BODY, headers=HOOK)
    report = await reports.wait_for(submitted.json()["id"])
    assert (report.outcome, report.attempts) == (outcome, attempts)
    assert len(receiver.attempts) == attempts


async def test_network_error_and_attempt_timeout_are_retried(
    serve: Any, http: httpx.AsyncClient, receiver_factory: Any
) -> None:
    receiver = await receiver_factory([503, 503, 200], hang_first=True)
    endpoint = local(receiver.url, attempt_timeout_seconds=3)  # generous: only the hang may time out
    stack, reports = await webhook_stack(serve, {"billing": endpoint})
    submitted = await stack.submit(http, "embeddings", json=BODY, headers=HOOK)
    report = await reports.wait_for(submitted.json()["id"])
    # the first attempt hung and was cut off by its timeout; then 503; then 200
    assert (report.outcome, report.attempts, report.status_code) == ("delivered", 3, 200)


async def test_later_attempts_say_the_result_expired(
    serve: Any, http: httpx.AsyncClient, receiver_factory: Any
) -> None:
    now = [time.time()]
    # the first attempt moves the store's clock past the job's TTL before it answers 503
    receiver = await receiver_factory([503, 200], on_attempt=lambda n: now.__setitem__(0, now[0] + 120))
    stack, reports = await webhook_stack(
        serve, {"billing": local(receiver.url, include_response=True)}, clock=lambda: now[0]
    )
    submitted = await stack.submit(
        http, "embeddings", json=BODY, headers={**HOOK, "x-bf-async-job-result-ttl": "60"}
    )
    job_id = submitted.json()["id"]
    assert (await reports.wait_for(job_id)).outcome == "delivered"
    first, second = (a["body"]["data"] for a in receiver.attempts)
    assert "result_url" in first and "response" in first and "result_expired" not in first
    assert second == {"job_id": job_id, "status": "completed", "result_expired": True}


async def test_per_endpoint_events(serve: Any, http: httpx.AsyncClient, receiver_factory: Any) -> None:
    receiver = await receiver_factory([200])
    stack, reports = await webhook_stack(
        serve, {"billing": local(receiver.url, events=("async_job.failed",))}, concurrency=1
    )
    ok = await stack.submit(http, "embeddings", json=BODY, headers=HOOK)
    await stack.recorder.wait("finished", ok.json()["id"])
    failed = await stack.submit(http, "embeddings", json={"model": "test/error"}, headers=HOOK)
    assert (await reports.wait_for(failed.json()["id"])).outcome == "delivered"
    assert [a["body"]["event"] for a in receiver.attempts] == ["async_job.failed"]  # not the completed one


async def test_private_network_refused_by_default(
    serve: Any, http: httpx.AsyncClient, receiver_factory: Any
) -> None:
    receiver = await receiver_factory([200])
    with pytest.raises(ValueError, match=r"url: .*private network"):
        WebhookEndpoint(url=receiver.url.replace("http:", "https:"), secret=SECRET)
    with pytest.raises(ValueError, match=r"url: .*https"):
        WebhookEndpoint(url=receiver.url, secret=SECRET)
    # a name that resolves to loopback passes validation but is refused when connecting
    port = receiver.url.split(":")[2].split("/")[0]
    sneaky = WebhookEndpoint(url=f"https://localhost:{port}/hook", secret=SECRET)
    stack, reports = await webhook_stack(serve, {"billing": sneaky})
    submitted = await stack.submit(http, "embeddings", json=BODY, headers=HOOK)
    report = await reports.wait_for(submitted.json()["id"])
    assert (report.outcome, report.attempts) == ("failed", 1)  # permanent: not retried
    assert receiver.attempts == []


async def test_unknown_or_disabled_webhook_fails_the_submit(
    serve: Any, http: httpx.AsyncClient, receiver_factory: Any
) -> None:
    receiver = await receiver_factory([200])
    endpoints = {"billing": local(receiver.url), "paused": local(receiver.url, enabled=False)}
    stack, _ = await webhook_stack(serve, endpoints)
    for name, word in (("nope", "unknown"), ("paused", "disabled")):
        response = await stack.submit(http, "embeddings", json=BODY, headers={"x-bf-async-webhook": name})
        assert response.status_code == 400
        assert response.json()["error"]["message"] == f"{word} webhook '{name}'"
        assert response.json()["error"]["param"] == "x-bf-async-webhook"
    assert stack.recorder.events == []  # no job was created
    assert receiver.attempts == []


async def test_slow_receiver_never_holds_a_worker(
    serve: Any, http: httpx.AsyncClient, receiver_factory: Any
) -> None:
    """With one worker and a receiver that never answers, jobs still run one after another."""
    receiver = await receiver_factory([200], hang_first=True)
    reports = Reports()
    plugin = WebhooksPlugin(
        {"billing": local(receiver.url, attempt_timeout_seconds=60)},
        policy=DeliveryPolicy(shutdown_grace=0.1),
        on_delivery=reports,
    )
    stack = await build_stack(serve, plugins=(plugin,), concurrency=1)
    first = await stack.submit(http, "embeddings", json=BODY, headers=HOOK)
    second = await stack.submit(http, "embeddings", json=BODY)
    await stack.recorder.wait("finished", second.json()["id"])
    await asyncio.wait_for(receiver.arrived.wait(), 20)
    assert plugin.dispatcher.pending == 1  # still hanging on the first event
    await stack.server.stop()  # shutdown abandons it after the grace, and says so
    assert (await reports.wait_for(first.json()["id"])).outcome == "dropped"


def test_endpoint_config_rejects_bad_settings_without_quoting_secrets() -> None:
    with pytest.raises(ValueError) as info:
        WebhookEndpoint(url="http://127.0.0.1:1/x", secret="whsec_not*base64", allow_private_network=True)
    assert "not*base64" not in str(info.value)
    assert "whsec" not in repr(local("http://127.0.0.1:1/x", headers={"X-Key": "hush"}))
    assert "hush" not in repr(local("http://127.0.0.1:1/x", headers={"X-Key": "hush"}))
    with pytest.raises(ValueError, match="url"):
        WebhookEndpoint(url="file:///etc/passwd", secret=SECRET)
    with pytest.raises(ValueError, match=r"headers: .*reserved"):
        local("http://127.0.0.1:1/x", headers={"webhook-signature": "forged"})
    with pytest.raises(ValueError, match="max_retries"):
        local("http://127.0.0.1:1/x", max_retries=-1)
    with pytest.raises(ValueError, match="events"):
        local("http://127.0.0.1:1/x", events=("async_job.started",))


async def test_an_unreachable_store_is_retried_not_given_up(
    serve: Any, http: httpx.AsyncClient, receiver_factory: Any
) -> None:
    receiver = await receiver_factory([200])
    stack, reports = await webhook_stack(serve, {"billing": local(receiver.url)})
    plugin = next(p for p in stack.middleware.pm.get_plugins() if isinstance(p, WebhooksPlugin))
    real, failures = plugin.records.webhook_get, [StoreUnavailable("redis is restarting")]

    async def flaky(endpoint_id: str) -> str | None:
        if failures:
            raise failures.pop()
        return await real(endpoint_id)

    plugin.records.webhook_get = flaky  # type: ignore[method-assign]
    submitted = await stack.submit(http, "embeddings", json=BODY, headers=HOOK)
    report = await reports.wait_for(submitted.json()["id"])
    assert (report.outcome, report.attempts, len(receiver.attempts)) == ("delivered", 2, 1)


def test_link_local_is_refused_even_with_allow_private_network() -> None:
    for url in ("http://169.254.169.254/latest", "http://[::ffff:169.254.169.254]/x", "http://[fe80::1]/x"):
        with pytest.raises(ValueError, match="link-local"):
            local(url)
    with pytest.raises(ValueError, match="private network"):  # an IPv4-mapped loopback is loopback
        WebhookEndpoint(url="https://[::ffff:127.0.0.1]/x", secret=SECRET)


async def test_header_mode_submit_honours_the_webhook_header(
    serve: Any, http: httpx.AsyncClient, receiver_factory: Any
) -> None:
    receiver = await receiver_factory([200])
    stack, reports = await webhook_stack(serve, {"billing": local(receiver.url)})
    path = f"{stack.url}/anthropic/v1/messages"
    submitted = await http.post(path, json=BODY, headers={"x-bf-async": "true", **HOOK})
    assert submitted.status_code == 200 and submitted.json()["type"] == "message"
    job_id = submitted.json()["id"]
    assert (await reports.wait_for(job_id)).outcome == "delivered"
    assert receiver.attempts[-1]["body"]["data"]["job_id"] == job_id
    unknown = await http.post(path, json=BODY, headers={"x-bf-async": "true", "x-bf-async-webhook": "nope"})
    assert unknown.status_code == 400 and unknown.json()["type"] == "error"  # the Anthropic route's shape
    assert "nope" in unknown.json()["error"]["message"]
