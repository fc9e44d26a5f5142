"""The OpenAPI document: served by the middleware, following the route table, and checked with
schemathesis against a real uvicorn server (nothing answers 500, responses match the document)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection

from bifrost_async import AsyncJobsMiddleware, RouteSpec
from bifrost_async.builtin.webhooks.delivery import DeliveryPolicy
from bifrost_async.builtin.webhooks.plugin import WebhookEndpoint, WebhooksPlugin
from bifrost_async.http.openapi import openapi_document
from tests.apps import make_app
from tests.helpers import served_in_thread

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef").decode()
DIARIZE = RouteSpec(
    "diarization", "audio/diarize", "/v1/audio/diarize", body="multipart", file_fields=("file",)
)


def make_middleware() -> AsyncJobsMiddleware:
    # a webhook endpoint nobody listens on: two quick refused attempts per event, then given up
    webhooks = WebhooksPlugin(
        {
            "billing": WebhookEndpoint(
                url="http://127.0.0.1:9/hook", secret=SECRET, allow_private_network=True, max_retries=1
            ),
            "paused": WebhookEndpoint(
                url="http://127.0.0.1:9/hook", secret=SECRET, allow_private_network=True, enabled=False
            ),
        },
        policy=DeliveryPolicy(shutdown_grace=1, backoff_scale=0.001),
    )
    return AsyncJobsMiddleware(
        make_app(),
        plugins=[webhooks],
        route_overrides={"transcription": "/api/transcribe"},
        extra_routes=(DIARIZE,),
    )


@pytest.fixture(scope="module")
def live_url() -> Iterator[str]:
    """The middleware-wrapped test app on uvicorn in a thread of its own: schemathesis calls it
    with a blocking client, which the test's own event loop could not answer."""
    app = make_middleware()
    with served_in_thread(app) as url:
        yield url


async def test_document_is_served_and_follows_the_route_table(serve: Any, http: httpx.AsyncClient) -> None:
    middleware = make_middleware()
    server = await serve(middleware)
    response = await http.get(f"{server.url}/v1/async/openapi.json")
    assert response.status_code == 200
    document = response.json()
    header_routes = middleware.header_async.routes
    assert document == openapi_document(
        middleware.routes, middleware.pm.get_plugins(), header_async=header_routes
    )
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    # eleven contract types and the extra one: submit/list, poll/cancel, and the raw result each,
    # plus the header mode's provider routes (x-bf-async)
    assert len(paths) == 3 * 12 + len(header_routes)
    header_mode = paths["/anthropic/v1/messages"]["post"]
    assert {p["name"] for p in header_mode["parameters"]} >= {"x-bf-async", "x-bf-async-id"}
    assert header_mode["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "AnthropicError"
    )
    diarize = paths["/v1/async/audio/diarize"]["post"]
    assert diarize["requestBody"]["content"]["multipart/form-data"]["schema"]["required"] == ["model", "file"]
    assert "/api/transcribe" in paths["/v1/async/audio/transcriptions"]["post"]["summary"]
    webhook = [p for p in diarize["parameters"] if p["name"] == "x-bf-async-webhook"]
    assert webhook[0]["x-extension"] is True and webhook[0]["schema"]["enum"] == ["billing"]
    assert (await http.post(f"{server.url}/v1/async/openapi.json")).status_code == 404


# Parametrised at collection time from the same document the server serves (the test above
# checks they are equal), less the header mode: its routes answer as the wrapped app does unless
# the client sends x-bf-async, so fuzzing them would test the app, not us (tests/http/test_header_async.py
# covers them). The lazy fixture loader does not work with this pytest version.
schema = schemathesis.openapi.from_dict(openapi_document(make_middleware().routes))


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_document(case: Any, live_url: str) -> None:
    excluded = []
    if case.media_type == "multipart/form-data":
        # A form value is text whatever schemathesis meant it to be (the "number" 12 arrives as
        # "12"), and the contract validates submits only lightly, so "negative" forms are
        # legitimately accepted; every other check (no 5xx, statuses, headers, schemas, positive
        # data accepted) still runs on them.
        excluded.append(negative_data_rejection)
    case.call_and_validate(base_url=live_url, excluded_checks=excluded)
