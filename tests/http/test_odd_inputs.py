"""Odd inputs and odd upstream answers never make the service answer 5xx (issue 11 items 6, 7, 13;
issue 12 item 5): through a real uvicorn, with the upstream's answer scripted per job."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from bifrost_async.core.capture import spool_body
from bifrost_async.errors import AsyncJobError
from tests.apps import scripted, scripted_app
from tests.helpers import Stack, build_stack

KEY = {"authorization": "Bearer sk-odd-inputs"}


@pytest.fixture
async def stack(serve: Any) -> Stack:
    return await build_stack(serve, app=scripted_app)


def strict_json(response: httpx.Response) -> Any:
    """The body as RFC 8259 JSON in UTF-8: no NaN/Infinity, no lone surrogate escapes."""

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    value = json.loads(response.content.decode("utf-8"), parse_constant=refuse)
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
    return value


async def finished(stack: Stack, http: httpx.AsyncClient, body: dict[str, Any]) -> tuple[Any, bytes]:
    """Submit a scripted job, wait for it, and return its poll JSON and its raw result bytes."""
    return await finished_job(stack, http, await stack.submit(http, "embeddings", json=body))


async def finished_job(stack: Stack, http: httpx.AsyncClient, submitted: httpx.Response) -> tuple[Any, bytes]:
    """Wait for a submitted job; its poll JSON and its raw result bytes."""
    polled = await stack.finish(http, "embeddings", submitted)
    assert polled.status_code == 200, polled.text
    raw = await http.get(f"{stack.url}/v1/async/embeddings/{submitted.json()['id']}/result")
    assert raw.status_code < 500 or raw.status_code == strict_json(polled)["status_code"], raw.text
    return strict_json(polled), raw.content


DEEP = b"[" * 900 + b"]" * 900


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        # an upstream that echoes the request's "\ud800": was a 500 on every poll, forever
        (b'"\\ud800"', "application/json", "\ufffd"),
        (
            b'{"a\\udc00": ["x\\ud800y", "\\ud83d\\ude00"]}',
            "application/json",
            {"a\ufffd": ["x\ufffdy", "😀"]},
        ),
        (b'"\xed\xa0\x80"', "application/json", "\ufffd"),  # CESU-8 bytes of a lone surrogate
        (b'"\\udfff"', None, "\ufffd"),  # no content type: JSON when it parses
        # Python's json reads these, strict parsers (JavaScript's JSON.parse) refuse them
        (b"[NaN, Infinity, -Infinity, 1e999, -1e999, 1.5, 12]", "application/json", [None] * 5 + [1.5, 12]),
        # nested too deep to write back: kept as text
        (DEEP, "application/json", {"text": DEEP.decode()}),
        # charsets that decode oddly: idna refuses "replace", unicode_escape makes surrogates
        (b"plain", "text/plain; charset=idna", {"text": "plain"}),
        (b"a\\ud800b", "text/plain; charset=unicode_escape", {"text": "a\ufffdb"}),
        (b"\xff\xfe", "application/json", {"text": "\ufffd\ufffd"}),
        (b"", "application/json", {"text": ""}),
    ],
)
async def test_odd_upstream_results_are_stored_servable(
    stack: Stack, http: httpx.AsyncClient, body: bytes, content_type: str | None, expected: Any
) -> None:
    job, raw = await finished(stack, http, scripted(body, content_type=content_type))
    assert job["status"] == "completed", job
    assert job["result"] == expected
    assert raw == body  # the exact bytes stay available


async def test_odd_upstream_errors_are_stored_servable(stack: Stack, http: httpx.AsyncClient) -> None:
    error = (
        b'{"error": {"message": "bad \\ud800", "code": NaN, "param": "\\udfff"},'
        b' "extra_fields": {"x": Infinity}}'
    )
    job, raw = await finished(stack, http, scripted(error, status=400))
    assert job["status"] == "failed" and job["status_code"] == 400
    assert job["error"]["error"]["message"] == "bad \ufffd"
    assert job["error"]["error"]["param"] == "\ufffd" and "code" not in job["error"]["error"]
    assert job["error"]["extra_fields"]["x"] is None
    assert raw == error
    plain, _ = await finished(stack, http, scripted(b'{"error": "\\ud800"}', status=503))
    assert plain["error"]["error"]["message"] == "\ufffd"


@pytest.mark.parametrize("status", [0, 99, 101, 199, 600, 999, 65536])
async def test_upstream_status_outside_200_599_fails_the_job_cleanly(
    stack: Stack, http: httpx.AsyncClient, status: int
) -> None:
    """Was: a job "failed" with status_code 0 (or 101, 999), and its raw result broke the
    connection (the server cannot send such a status)."""
    job, raw = await finished(stack, http, scripted(b"{}", status=status))
    assert job["status"] == "failed" and job["status_code"] == 502, job
    assert job["error"]["error"]["code"] == "invalid_status"
    assert f"HTTP status {status}," in job["error"]["error"]["message"]
    assert json.loads(raw) == job["error"]


@pytest.mark.parametrize("content_type", ["text/plain\r\nx-injected: 1", "text/plain\x00", " text/plain "])
async def test_raw_result_with_an_unsendable_content_type(
    stack: Stack, http: httpx.AsyncClient, content_type: str
) -> None:
    """An in-process app may answer any content type; the raw result used to break its
    connection when the value held CR, LF, NUL or surrounding spaces (h11 will not send it)."""
    job, raw = await finished(stack, http, scripted(b"hello", content_type=content_type))
    assert job["status"] == "completed" and raw == b"hello"


async def test_a_model_with_a_lone_surrogate_is_stored_clean(stack: Stack, http: httpx.AsyncClient) -> None:
    body = json.dumps({**scripted(b"no", status=400), "model": "p\ud800/m\udfff"})
    submitted = await stack.submit(
        http, "embeddings", content=body, headers={"content-type": "application/json"}
    )
    job, _ = await finished_job(stack, http, submitted)
    assert job["error"]["extra_fields"] == {
        "request_type": "embedding",
        "provider": "p\ufffd",
        "model_requested": "m\ufffd",
    }
    stored = await stack.middleware.store.get(job["id"])  # type: ignore[union-attr]
    assert stored is not None and stored.extra_fields["provider"] == "p\ufffd"


def multipart(boundary: str, *, file_name: str = "file", as_file: bool = True) -> bytes:
    disposition = f'form-data; name="{file_name}"' + ('; filename="a.wav"' if as_file else "")
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nm\r\n'
        f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\nRIFFdata\r\n--{boundary}--\r\n"
    ).encode()


@pytest.mark.parametrize(
    "member",
    [b'"big": 854754652972882170216448', b'"neg": -99999999999999999999999', b'"s": "\\ud800x"'],
)
async def test_valid_json_the_c_parser_refuses_is_accepted(
    stack: Stack, http: httpx.AsyncClient, member: bytes
) -> None:
    """Integers past 64 bits and lone surrogate escapes are valid JSON to json.loads and so to the
    app behind us; the streaming validator must not call them malformed (ijson's C back end does)."""
    body = json.dumps(scripted(b"{}", status=200))[:-1].encode() + b", " + member + b"}"
    submitted = await stack.submit(
        http, "embeddings", content=body, headers={"content-type": "application/json"}
    )
    job, _ = await finished_job(stack, http, submitted)
    assert job["status"] == "completed"


@pytest.mark.parametrize("length", [71, 300, 5000])
async def test_multipart_boundary_over_70_characters_is_400(
    serve: Any, http: httpx.AsyncClient, length: int
) -> None:
    stack = await build_stack(serve)
    boundary = "b" * length
    response = await stack.submit(
        http,
        "audio/transcriptions",
        content=multipart(boundary),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_multipart"
    assert "1 to 70 characters" in response.json()["error"]["message"]
    ok = await stack.submit(
        http,
        "audio/transcriptions",
        content=multipart("b" * 70),
        headers={"content-type": f"multipart/form-data; boundary={'b' * 70}"},
    )
    assert (await stack.finish(http, "audio/transcriptions", ok)).json()["status"] == "completed"


@pytest.mark.parametrize(
    ("path", "field"),
    [("audio/transcriptions", "file"), ("images/edits", "image"), ("images/variations", "image")],
)
async def test_file_sent_as_a_text_field_is_400_with_a_hint(
    serve: Any, http: httpx.AsyncClient, path: str, field: str
) -> None:
    """``curl -F file=examples/hello.wav`` (the @ forgotten) sends the path as a text field."""
    stack = await build_stack(serve)
    response = await stack.submit(
        http, path, files={"model": (None, "m"), field: (None, "examples/hello.wav")}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == field
    assert error["message"] == (
        f"{field} must be a file upload, not a text field: with curl, put @ before the path "
        f"(-F {field}=@path)"
    )
    ok = await stack.submit(http, path, files={"model": (None, "m"), field: ("a.png", b"PNG")})
    assert (await stack.finish(http, path, ok)).json()["status"] == "completed"


@pytest.mark.parametrize("limit", ["²", "\u0661", "+5", " 5", "1_0", "5.0", "0", "101", "9" * 40, ""])
async def test_list_limit_is_parsed_strictly(stack: Stack, http: httpx.AsyncClient, limit: str) -> None:
    response = await http.get(f"{stack.url}/v1/async/embeddings", params={"limit": limit}, headers=KEY)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_limit", "limit")
    assert error["message"] == "limit must be an integer from 1 to 100"


@pytest.mark.parametrize("wait", ["²", "\u0661", "1e1", "nan", "inf", "-1", " 1", "1_0", ".5"])
async def test_wait_is_parsed_strictly(stack: Stack, http: httpx.AsyncClient, wait: str) -> None:
    submitted = await stack.submit(http, "embeddings", json=scripted(b"{}"))
    url = f"{stack.url}/v1/async/embeddings/{submitted.json()['id']}"
    response = await http.get(url, params={"wait": wait})
    assert response.status_code == 400, response.text
    assert (
        response.json()["error"]["param"] == "wait" and "wait must be" in response.json()["error"]["message"]
    )
    assert (await http.get(url, params={"wait": "0.5"})).status_code in (200, 202)


@pytest.mark.parametrize("created", ["\u0661\u0667\u0660\u0660", "nan", " 1", "1_0", "0x10"])
async def test_forged_cursor_numbers_are_400(stack: Stack, http: httpx.AsyncClient, created: str) -> None:
    raw = f"{created}|0e46c32d-0000-4000-8000-000000000000".encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    response = await http.get(f"{stack.url}/v1/async/embeddings", params={"cursor": cursor}, headers=KEY)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "cursor"


@pytest.mark.parametrize("declared", [b"\xd9\xa1\xd9\xa0", b"+5", b" 5", b"1_0", b"9" * 30])
async def test_content_length_is_parsed_strictly(declared: bytes) -> None:
    """uvicorn's parsers refuse these before any app runs; other ASGI servers may pass them."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    with pytest.raises(AsyncJobError) as refused:
        await spool_body(receive, [(b"content-length", declared)], max_bytes=10**6, memory_bytes=1024)
    assert refused.value.status_code == 400 and refused.value.param == "Content-Length"


async def test_list_items_leave_out_results(stack: Stack, http: httpx.AsyncClient) -> None:
    """A page of jobs with 200 KB results each stays small; each result is at its poll URL."""
    big = json.dumps({"data": ["x" * 1000] * 200}).encode()
    ids = []
    for _ in range(3):
        submitted = await stack.submit(http, "embeddings", json=scripted(big), headers=KEY)
        await stack.finish(http, "embeddings", submitted, headers=KEY)
        ids.append(submitted.json()["id"])
    failed = await stack.submit(
        http, "embeddings", json=scripted(b'{"error": "no"}', status=400), headers=KEY
    )
    await stack.finish(http, "embeddings", failed, headers=KEY)
    page = await http.get(f"{stack.url}/v1/async/embeddings", params={"limit": "100"}, headers=KEY)
    assert page.status_code == 200
    assert len(page.content) < 4096, len(page.content)
    items = page.json()["data"]
    assert [item["id"] for item in items] == [failed.json()["id"], *reversed(ids)]
    assert all("result" not in item and "error" not in item for item in items)
    assert [item["status_code"] for item in items] == [400, 200, 200, 200]
    polled = await http.get(f"{page.url.copy_with(params=None)}/{ids[0]}", headers=KEY)
    assert polled.json()["result"] == json.loads(big)
