"""Virtual keys and the accepted-keys check, through the middleware on a real uvicorn: one owner
across the four credential headers, private VK jobs and public keyless ones, unknown virtual key
400 and unknown API key 401 at submit before the body is read, and the ``pre_accept`` hook."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bifrost_async import AsyncJobError, hookimpl
from bifrost_async.service.credentials import AcceptedKeys
from tests.helpers import build_stack

VK = "sk-bf-alpha-0001"
HEADERS_FOR = {
    "x-bf-vk": lambda key: {"x-bf-vk": key},
    "authorization": lambda key: {"Authorization": f"Bearer {key}"},
    "x-api-key": lambda key: {"x-api-key": key},
    "x-goog-api-key": lambda key: {"x-goog-api-key": key},
}
BODY = {"model": "test/ok", "messages": []}


@pytest.mark.parametrize("submit_with", list(HEADERS_FOR))
async def test_a_virtual_key_is_one_owner_across_headers(
    serve: Any, http: httpx.AsyncClient, submit_with: str
) -> None:
    stack = await build_stack(serve)
    submitted = await stack.submit(http, "chat/completions", json=BODY, headers=HEADERS_FOR[submit_with](VK))
    await stack.recorder.wait("finished", submitted.json()["id"])
    poll = f"{stack.url}/v1/async/chat/completions/{submitted.json()['id']}"
    for header, make in HEADERS_FOR.items():
        assert (await http.get(poll, headers=make(VK))).status_code == 200, header
    assert (await http.get(poll, headers={"x-bf-vk": "sk-bf-beta-0002"})).status_code == 404
    assert (await http.get(poll)).status_code == 404


async def test_other_credentials_keep_per_header_owners_and_keyless_jobs_are_public(
    serve: Any, http: httpx.AsyncClient
) -> None:
    stack = await build_stack(serve)
    submitted = await stack.submit(http, "chat/completions", json=BODY, headers={"x-api-key": "sk-openai-1"})
    poll = f"{stack.url}/v1/async/chat/completions/{submitted.json()['id']}"
    assert (await http.get(poll, headers={"Authorization": "Bearer sk-openai-1"})).status_code == 404
    assert (await http.get(poll, headers={"x-api-key": "sk-openai-1"})).status_code in (200, 202)
    public = await stack.submit(http, "chat/completions", json=BODY)
    public_poll = f"{stack.url}/v1/async/chat/completions/{public.json()['id']}"
    for headers in ({}, {"x-bf-vk": VK}, {"x-api-key": "anything"}):
        assert (await http.get(public_poll, headers=headers)).status_code in (200, 202)


async def test_unknown_virtual_key_is_400_before_the_body_is_read(
    serve: Any, http: httpx.AsyncClient
) -> None:
    stack = await build_stack(serve, api_keys=[VK], max_body_bytes=1024)
    too_big = {"model": "test/ok", "input": "x" * 4096}  # would be 413 if the body were read
    refused = await stack.submit(
        http, "responses", json=too_big, headers={"Authorization": "Bearer sk-bf-nope"}
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["message"] == "virtual key not found"
    header_mode = await http.post(
        stack.url + "/v1/responses", json=too_big, headers={"x-bf-async": "true", "x-bf-vk": "sk-bf-nope"}
    )
    assert (
        header_mode.status_code == 400 and header_mode.json()["error"]["message"] == "virtual key not found"
    )
    accepted = await stack.submit(http, "responses", json=BODY, headers={"x-goog-api-key": VK})
    assert accepted.status_code == 202
    keyless = await stack.submit(http, "responses", json=BODY)
    assert keyless.status_code == 202  # only virtual keys configured: keyless jobs stay public
    assert [kind for kind, _ in stack.recorder.events].count("submitted") == 2  # the refusals made no job


async def test_unknown_or_missing_api_key_is_401_when_api_keys_are_configured(
    serve: Any, http: httpx.AsyncClient
) -> None:
    keys = AcceptedKeys.from_keys(["sk-live-key", VK], secret="s3cret")
    stack = await build_stack(serve, api_keys=keys, owner_secret="s3cret")
    for headers in ({}, {"Authorization": "Bearer sk-live-other"}, {"x-api-key": "sk-live-keyX"}):
        refused = await stack.submit(http, "responses", json=BODY, headers=headers)
        assert refused.status_code == 401, headers
        assert refused.json()["error"]["type"] == "authentication_error"
    for headers in ({"Authorization": "Bearer sk-live-key"}, {"x-api-key": "sk-live-key"}, {"x-bf-vk": VK}):
        assert (await stack.submit(http, "responses", json=BODY, headers=headers)).status_code == 202, headers
    assert "sk-live-key" not in repr(keys) and "sk-live-key" not in repr(vars(keys))


async def test_pre_accept_hook_refuses_before_the_body_is_read(serve: Any, http: httpx.AsyncClient) -> None:
    seen: list[str] = []

    class Refuser:
        @hookimpl
        def pre_accept(self, headers: list[tuple[bytes, bytes]], request_type: str) -> None:
            seen.append(request_type)
            if (b"x-refuse", b"yes") in headers:
                raise AsyncJobError(403, "refused by policy", type="permission_error")

    stack = await build_stack(serve, plugins=(Refuser(),), max_body_bytes=1024)
    refused = await stack.submit(
        http, "embeddings", json={"model": "m", "input": "x" * 4096}, headers={"x-refuse": "yes"}
    )
    assert refused.status_code == 403 and refused.json()["error"]["message"] == "refused by policy"
    assert refused.json()["status_code"] == 403 and seen == ["embedding"]
    assert not stack.recorder.events
