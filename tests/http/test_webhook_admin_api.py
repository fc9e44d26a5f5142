"""The webhook management API ``/api/webhooks`` over a real uvicorn server, with a real aiohttp
receiver: every call and its errors, history and counters, redeliver, rotate, test fire."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from bifrost_async import AsyncJobsMiddleware
from bifrost_async.builtin.webhooks.openapi import admin_paths
from bifrost_async.builtin.webhooks.plugin import WebhooksPlugin, verify
from bifrost_async.cli import main
from bifrost_async.http.openapi import openapi_document
from tests.apps import make_app
from tests.helpers import build_stack, served_in_thread
from tests.webhook_support import FAST, Reports

TOKEN = "operator-token-0123456789"
ADMIN = {"X-Bifrost-Setup-Token": TOKEN}


async def admin_stack(serve: Any, **kwargs: Any) -> Any:
    reports = Reports()
    plugin = WebhooksPlugin(policy=FAST, on_delivery=reports, admin_token=TOKEN, **kwargs)
    stack = await build_stack(serve, plugins=(plugin,))
    return stack, reports, f"{stack.url}/api/webhooks"


def spec(url: str, **fields: Any) -> dict[str, Any]:
    return {"name": "billing", "url": url, "events": ["async_job.completed", "async_job.failed"],
            "allow_private_network": True, **fields}  # fmt: skip


async def test_api_is_off_without_a_token_and_needs_it_when_on(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve, plugins=(WebhooksPlugin(),))
    off = await http.get(f"{stack.url}/api/webhooks", headers=ADMIN)
    assert off.status_code == 404 and off.json()["error"]["code"] == "unknown_route"

    _, _, api = await admin_stack(serve)
    for headers in ({}, {"X-Bifrost-Setup-Token": "wrong"}, {"Authorization": "Bearer nope"}):
        refused = await http.get(api, headers=headers)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_admin_token"
    assert (await http.get(api, headers=ADMIN)).status_code == 200
    assert (await http.get(api, headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 200
    assert (await http.patch(api, headers=ADMIN)).status_code == 405
    assert (await http.get(f"{api}/x/nothing", headers=ADMIN)).status_code == 404


async def test_create_get_list_update_delete_and_their_errors(serve: Any, http: httpx.AsyncClient) -> None:
    stack, _, api = await admin_stack(serve)
    created = await http.post(
        api, headers=ADMIN, json=spec("http://127.0.0.1:9/h", headers={"X-Key": "hush"})
    )
    assert created.status_code == 201, created.text
    secret, endpoint = created.json()["secret"], created.json()["endpoint"]
    assert secret.startswith("whsec_") and "secret" not in endpoint
    assert endpoint["headers"] == {"X-Key": "<redacted>"}
    assert endpoint["max_retries"] == 0 and endpoint["disabled"] is False
    assert (endpoint["successes"], endpoint["failures"]) == (0, 0)
    shown = (await http.get(f"{api}/{endpoint['id']}", headers=ADMIN)).json()
    assert secret not in str(shown) and "hush" not in str(shown)  # the secret is shown once only

    duplicate = await http.post(api, headers=ADMIN, json=spec("http://127.0.0.1:9/other"))
    assert duplicate.status_code == 409 and duplicate.json()["error"]["param"] == "name"
    for body, field in (
        (spec("ftp://x/y", name="a"), "url"),
        (spec("http://10.0.0.1/h", name="a", allow_private_network=False), "url"),
        (spec("https://127.0.0.1/h", name="a", allow_private_network=False), "url"),
        (spec("http://127.0.0.1:9/h", name="a", events=["async_job.started"]), "events"),
        (spec("http://127.0.0.1:9/h", name="a", events=[]), "events"),
        (spec("http://127.0.0.1:9/h", name="a", headers={"Webhook-Signature": "x"}), "headers"),
        (spec("http://127.0.0.1:9/h", name="a", max_retries=-1), "max_retries"),
        (
            spec("http://127.0.0.1:9/h", name="a", retry_backoff_initial_seconds="5"),
            "retry_backoff_initial_seconds",
        ),
        (spec("http://127.0.0.1:9/h", name="a", colour="red"), "colour"),
        (spec("http://127.0.0.1:9/h", name=""), "name"),
    ):
        refused = await http.post(api, headers=ADMIN, json=body)
        assert refused.status_code == 400, body
        assert refused.json()["error"]["param"] == field, refused.json()
    for junk in (b"{nope", b"[" * 5000):  # nested past the parser's recursion limit: was a 500
        not_json = await http.post(api, headers=ADMIN, content=junk)
        assert not_json.status_code == 400 and not_json.json()["error"]["param"] == "body"

    audit = spec("http://127.0.0.1:9/s", name="audit", events=["async_job.failed"], disabled=True)
    second = (await http.post(api, headers=ADMIN, json=audit)).json()
    listing = (await http.get(api, headers=ADMIN)).json()
    assert listing["total_count"] == 2 and {e["name"] for e in listing["endpoints"]} == {"billing", "audit"}
    assert [
        e["name"] for e in (await http.get(api, headers=ADMIN, params={"search": "AUD"})).json()["endpoints"]
    ] == ["audit"]
    completed = await http.get(api, headers=ADMIN, params={"event": "async_job.completed"})
    assert [e["name"] for e in completed.json()["endpoints"]] == ["billing"]
    disabled = await http.get(api, headers=ADMIN, params={"disabled": "true"})
    assert [e["name"] for e in disabled.json()["endpoints"]] == ["audit"]
    page = (await http.get(api, headers=ADMIN, params={"limit": 1, "offset": 1})).json()
    assert page["count"] == 1 and page["total_count"] == 2 and page["offset"] == 1
    for params, field in (({"limit": "-1"}, "limit"), ({"limit": "1000"}, "limit"), ({"event": "x"}, "event"),
                          ({"disabled": "maybe"}, "disabled"), ({"limit": "²"}, "limit"),
                          ({"offset": "\u0661"}, "offset")):  # fmt: skip
        refused = await http.get(api, headers=ADMIN, params=params)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == field

    # PUT replaces the whole endpoint; a header sent back redacted keeps its stored value
    renamed = spec("http://127.0.0.1:9/h2", name="billing-v2", headers={"X-Key": "<redacted>"}, max_retries=7)
    updated = await http.put(f"{api}/{endpoint['id']}", headers=ADMIN, json=renamed)
    assert updated.status_code == 200 and updated.json()["name"] == "billing-v2"
    assert updated.json()["max_retries"] == 7 and updated.json()["url"] == "http://127.0.0.1:9/h2"
    plugin = next(p for p in stack.middleware.pm.get_plugins() if isinstance(p, WebhooksPlugin))
    assert plugin.endpoints["billing-v2"].headers == {"X-Key": "hush"}
    assert plugin.endpoints["billing-v2"].secret == secret  # an update never changes the secret
    clash = await http.put(
        f"{api}/{endpoint['id']}", headers=ADMIN, json=spec("http://127.0.0.1:9/h", name="audit")
    )
    assert clash.status_code == 409
    assert (await http.put(f"{api}/nope", headers=ADMIN, json=renamed)).status_code == 404
    assert (await http.get(f"{api}/nope", headers=ADMIN)).status_code == 404

    assert (await http.delete(f"{api}/{second['endpoint']['id']}", headers=ADMIN)).json() == {
        "status": "success"
    }
    assert (await http.delete(f"{api}/{second['endpoint']['id']}", headers=ADMIN)).status_code == 404
    gone = await stack.submit(
        http, "embeddings", json={"model": "m", "input": "x"}, headers={"x-bf-async-webhook": "audit"}
    )
    assert gone.status_code == 400 and gone.json()["error"]["message"] == "unknown webhook 'audit'"


async def test_history_counters_redeliver_and_disabled_refusal(
    serve: Any, http: httpx.AsyncClient, receiver_factory: Any
) -> None:
    receiver = await receiver_factory([404, 200])
    stack, reports, api = await admin_stack(serve)
    created = (await http.post(api, headers=ADMIN, json=spec(receiver.url, record_request_body=True))).json()
    endpoint_id = created["endpoint"]["id"]
    submitted = await stack.submit(
        http, "embeddings", json={"model": "m", "input": "x"}, headers={"x-bf-async-webhook": "billing"}
    )
    job_id = submitted.json()["id"]
    assert (await reports.wait_for(job_id)).outcome == "failed"  # 404: permanent, one attempt

    history = (await http.get(f"{api}/{endpoint_id}/deliveries", headers=ADMIN)).json()
    assert history["pagination"]["total_count"] == 1
    first = history["deliveries"][0]
    assert (first["outcome"], first["status_code"], first["attempt_no"]) == ("permanent_failure", 404, 1)
    assert first["async_job_id"] == job_id and first["event"] == "async_job.completed"
    assert first["error"] == "receiver responded 404" and first["duration_ms"] >= 0
    assert first["request_body"] == receiver.attempts[0]["raw"].decode()  # the operator allowed it
    counters = (await http.get(f"{api}/{endpoint_id}", headers=ADMIN)).json()
    assert (counters["failures"], counters["successes"], counters["last_status_code"]) == (1, 0, 404)

    reports.reports.clear()
    again = await http.post(f"{api}/deliveries/{first['id']}/redeliver", headers=ADMIN)
    assert again.status_code == 202 and again.json() == {"status": "queued", "webhook_id": f"msg_{job_id}"}
    assert (await reports.wait_for(job_id)).outcome == "delivered"
    assert receiver.attempts[1]["id"] == receiver.attempts[0]["id"]  # same webhook-id: a replay
    assert verify(created["secret"], receiver.attempts[1]["headers"], receiver.attempts[1]["raw"])
    counters = (await http.get(f"{api}/{endpoint_id}", headers=ADMIN)).json()
    assert (counters["failures"], counters["successes"], counters["consecutive_failures"]) == (1, 1, 0)
    assert counters["last_status_code"] == 200 and "last_success_at" in counters

    newest = (await http.get(f"{api}/{endpoint_id}/deliveries", headers=ADMIN, params={"limit": 1})).json()
    assert newest["pagination"]["total_count"] == 2 and newest["deliveries"][0]["outcome"] == "delivered"
    await http.put(f"{api}/{endpoint_id}", headers=ADMIN, json=spec(receiver.url, disabled=True))
    refused = await http.post(f"{api}/deliveries/{first['id']}/redeliver", headers=ADMIN)
    assert refused.status_code == 400 and "disabled" in refused.json()["error"]["message"]
    assert (await http.post(f"{api}/deliveries/nope/redeliver", headers=ADMIN)).status_code == 404


async def test_rotate_secret_and_test_fire(
    serve: Any, http: httpx.AsyncClient, receiver_factory: Any
) -> None:
    receiver = await receiver_factory([200])
    stack, reports, api = await admin_stack(serve)
    created = (
        await http.post(api, headers=ADMIN, json=spec(receiver.url, events=["async_job.completed"]))
    ).json()
    endpoint_id, old = created["endpoint"]["id"], created["secret"]

    fired = await http.post(f"{api}/{endpoint_id}/test", headers=ADMIN)
    assert fired.json() == {"delivered": True, "receiver_status_code": 200}
    sample = receiver.attempts[-1]
    assert sample["body"]["event"] == "async_job.completed" and sample["body"]["data"]["job_id"].startswith(
        "test-"
    )
    assert sample["headers"]["X-Bifrost-Event"] == "async_job.completed"
    assert verify(old, sample["headers"], sample["raw"])
    unsubscribed = await http.post(
        f"{api}/{endpoint_id}/test", headers=ADMIN, json={"event": "async_job.failed"}
    )
    assert unsubscribed.status_code == 400 and unsubscribed.json()["error"]["param"] == "event"

    rotated = await http.post(f"{api}/{endpoint_id}/rotate-secret", headers=ADMIN)
    new = rotated.json()["secret"]
    assert rotated.status_code == 200 and new != old and rotated.json()["endpoint"]["id"] == endpoint_id
    submitted = await stack.submit(
        http, "embeddings", json={"model": "m", "input": "x"}, headers={"x-bf-async-webhook": "billing"}
    )
    assert (await reports.wait_for(submitted.json()["id"])).outcome == "delivered"
    last = receiver.attempts[-1]
    assert verify(new, last["headers"], last["raw"])
    assert not verify(old, last["headers"], last["raw"])  # the old secret stops verifying
    assert (await http.post(f"{api}/nope/rotate-secret", headers=ADMIN)).status_code == 404


async def test_openapi_documents_the_api_only_when_it_is_on(serve: Any, http: httpx.AsyncClient) -> None:
    stack, _, _ = await admin_stack(serve)
    paths = (await http.get(f"{stack.url}/v1/async/openapi.json")).json()["paths"]
    assert {"get", "post"} <= set(paths["/api/webhooks"])
    assert "post" in paths["/api/webhooks/deliveries/{id}/redeliver"]
    assert paths["/api/webhooks"]["post"]["responses"]["409"]
    off = await build_stack(serve, plugins=(WebhooksPlugin(),))
    assert "/api/webhooks" not in (await http.get(f"{off.url}/v1/async/openapi.json")).json()["paths"]


def test_a_short_admin_token_is_a_one_line_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--upstream", "http://127.0.0.1:9", "--admin-token", "short-token"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at least 16 characters" in err and "short-token" not in err


async def test_endpoint_count_is_bounded(serve: Any, http: httpx.AsyncClient, monkeypatch: Any) -> None:
    monkeypatch.setattr("bifrost_async.http.webhook_admin.MAX_ENDPOINTS", 2)
    _, _, api = await admin_stack(serve)
    for n in range(2):
        assert (
            await http.post(api, headers=ADMIN, json=spec("http://127.0.0.1:9/h", name=f"e{n}"))
        ).status_code == 201
    refused = await http.post(api, headers=ADMIN, json=spec("http://127.0.0.1:9/h", name="e2"))
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "too_many_webhooks"


def _admin_middleware() -> AsyncJobsMiddleware:
    return AsyncJobsMiddleware(make_app(), plugins=[WebhooksPlugin(policy=FAST, admin_token=TOKEN)])


@pytest.fixture(scope="module")
def admin_url() -> Iterator[str]:
    """The management API on uvicorn in a thread of its own (schemathesis's client blocks)."""
    with served_in_thread(_admin_middleware()) as url:
        yield url


admin_schema = schemathesis.openapi.from_dict(
    {**openapi_document(_admin_middleware().routes), "paths": admin_paths()}
)


@admin_schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_management_api_never_answers_500(case: Any, admin_url: str) -> None:
    """Whatever an operator sends, the answer is a clear 2xx/4xx in the error shape, never a 500."""
    response = case.call(base_url=admin_url, headers=ADMIN)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]["message"]
