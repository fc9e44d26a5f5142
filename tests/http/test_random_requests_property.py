"""Property test (issue 11, "Done means"): random requests *and* random upstream answers through a
real uvicorn server. Whatever comes in or comes back from the endpoint:

- the service itself never answers 5xx (``GET .../{id}/result`` may pass on the endpoint's own
  5xx, and only that), and every answer it writes is strict UTF-8 JSON in the contract's shape;
- every accepted job reaches a terminal state, and its poll says so;
- stored jobs stay intact: every job polls the same at the end as when it had just finished.

Reproducible: ``derandomize`` and no example database, so CI runs the same examples each time.
The clock is frozen so that a random TTL header never expires a job in the middle of the run.
"""

from __future__ import annotations

import base64
import contextlib
import json
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bifrost_async.service.routes import DEFAULT_ROUTES
from tests.apps import scripted_app
from tests.helpers import Stack, build_stack

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
JSON_PATHS = [spec.path for spec in DEFAULT_ROUTES if spec.body == "json"]
ALL_PATHS = [spec.path for spec in DEFAULT_ROUTES]
NOW = 1_764_000_000.0

#: Header text a client can send: Latin-1 without CR, LF, NUL or DEL, and without the leading or
#: trailing whitespace that HTTP strips (h11 refuses to send it).
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=24
).map(lambda text: text.strip(" \t"))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
#: Bodies an odd upstream answers: JSON Python writes (NaN, Infinity), lone surrogates as escapes
#: and as CESU-8 bytes, deep nesting, huge numbers, invalid UTF-8, empty.
upstream_bodies = st.one_of(
    json_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"",
            b'"\\ud800"',
            b'{"text": "a\\udfffb"}',
            b'"\xed\xa0\x80"',
            b"[NaN, Infinity, -Infinity, 1e999]",
            b"9" * 5000,
            b"[" * 300 + b"]" * 300,
            b"[" * 5000,
            b'{"error": {"message": "\\ud800", "code": NaN}}',
            b"\xff\xfe\x00",
        ]
    ),
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "application/json",
            "application/problem+json",
            "application/json; charset=utf-16",
            "text/plain",
            "text/plain; charset=latin-1",
            "text/plain; charset=idna",
            "text/plain; charset=unicode_escape",
            "text/plain; charset=base64",
            "text/plain; charset=nope",
            'text/plain; charset="',
            "audio/mpeg",
            "application/octet-stream",
            "",
        ]
    ),
    header_text,
)
answers = st.fixed_dictionaries(
    {
        "status": st.one_of(
            st.integers(min_value=200, max_value=599), st.integers(min_value=0, max_value=1100)
        ),
        # an in-process app may also answer header values no client could send
        "content_type": content_types | st.sampled_from(["text/plain\r\nx: y", "a\x00", " text/plain "]),
        "body": upstream_bodies.map(lambda body: base64.b64encode(body).decode()),
    }
)
request_headers = st.fixed_dictionaries(
    {},
    optional={
        "authorization": st.sampled_from(["Bearer sk-a", "Bearer sk-b", "Bearer sk-bf-x"]),
        "x-bf-async-job-result-ttl": header_text,
        "x-request-id": header_text,
        "prefer": st.sampled_from(["wait=0", "wait=²", "wait=0.2", "respond-async", "wait=1e1, odd"]),
        "idempotency-key": st.sampled_from(["k1", "k2", "\xe9t\xe9"]),
        "x-bf-async-webhook": header_text,
        "x-bf-vk": st.sampled_from(["sk-bf-x", "sk-bf-", "\xff"]),
    },
)


def strict(response: httpx.Response) -> Any:
    """The body as strict JSON: valid UTF-8, no NaN or Infinity, no lone surrogate."""

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in {response.request.url}")

    value = json.loads(response.content.decode("utf-8"), parse_constant=refuse)
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
    return value


def contract_answer(response: httpx.Response) -> Any:
    """No 5xx; errors in the contract's shape; everything strict JSON."""
    assert response.status_code < 500, response.text[:500]
    if response.status_code == 204 or response.request.method == "HEAD":
        return None
    body = strict(response)
    if response.status_code >= 400:
        assert isinstance(body["error"]["message"], str) and isinstance(body["extra_fields"], dict), body
    return body


class Tracked:
    """The server under test and every job it accepted, with its first terminal poll."""

    def __init__(self, stack: Stack, http: httpx.AsyncClient, *, ttl_header: bool) -> None:
        self.stack = stack
        self.http = http
        self.ttl_header = ttl_header
        self.jobs: dict[str, tuple[str, dict[str, bytes], Any]] = {}

    def encode(self, headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
        """The drawn headers as sent (without the TTL header where jobs must not expire)."""
        return [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in headers.items()
            if self.ttl_header or k != "x-bf-async-job-result-ttl"
        ]

    def url(self, path: str, job_id: str = "", suffix: str = "") -> str:
        return f"{self.stack.url}/v1/async/{path}" + (f"/{job_id}{suffix}" if job_id else "")

    async def settle(self, path: str, submitted: httpx.Response, headers: dict[str, str]) -> None:
        """Wait for an accepted job to end (by its hook), then check its poll and raw result."""
        job_id = contract_answer(submitted)["id"]
        await self.stack.recorder.wait("finished", job_id)
        owner = {k: v.encode("latin-1") for k, v in headers.items() if k in ("authorization", "x-bf-vk")}
        polled = await self.http.get(self.url(path, job_id), headers=owner)
        job = contract_answer(polled)
        assert polled.status_code == 200 and job["status"] in ("completed", "failed"), (job, headers, path)
        assert isinstance(job["status_code"], int) and job["status_code"] != 0
        raw = await self.http.get(self.url(path, job_id, "/result"), headers=owner)
        if raw.status_code >= 500:  # only the endpoint's own 5xx, passed on as it was
            assert raw.status_code == job["status_code"], raw.text[:300]
        self.jobs.setdefault(job_id, (path, owner, job))

    async def check_intact(self) -> None:
        for job_id, (path, owner, first) in self.jobs.items():
            again = await self.http.get(self.url(path, job_id), headers=owner)
            assert again.status_code == 200 and strict(again) == first, job_id


@contextlib.asynccontextmanager
async def tracking(serve: Any, *, frozen: bool = True, **options: Any) -> AsyncIterator[Tracked]:
    """The scripted app behind the middleware (``options``: e.g. another store) on a real
    uvicorn; at the end, every job it accepted must poll as it did when it had just ended.

    ``frozen``: the clock stands still, so a random TTL never expires a job mid-run. A store that
    expires by its server's own clock (Redis) runs on the real clock without the TTL header."""
    clock = {"clock": lambda: NOW} if frozen else {}
    stack = await build_stack(serve, app=scripted_app, max_wait_seconds=1, **clock, **options)
    # A connection per request: on a kept-alive connection each answer here waits ~40 ms for a
    # delayed ACK (uvicorn with or without the middleware alike), which would make this test slow
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as http:
        target = Tracked(stack, http, ttl_header=frozen)
        yield target
        await target.check_intact()
    print(f"property: {len(target.jobs)} jobs accepted and settled")


@pytest.fixture
async def tracked(serve: Any) -> AsyncIterator[Tracked]:
    async with tracking(serve) as target:
        yield target


@PROPERTY
@given(
    path=st.sampled_from(JSON_PATHS),
    answer=answers,
    extra=st.dictionaries(st.sampled_from(["input", "stream", "n", "model"]), json_values, max_size=2),
    headers=request_headers,
)
async def test_random_upstream_answers(
    tracked: Tracked, path: str, answer: dict[str, Any], extra: dict[str, Any], headers: dict[str, str]
) -> None:
    body = {"model": "test/scripted", **extra, "answer": answer}
    encoded = tracked.encode(headers)
    encoded.append((b"content-type", b"application/json"))
    # json.dumps, not httpx's json=: a request may hold NaN as well (Python writes it)
    submitted = await tracked.http.post(tracked.url(path), content=json.dumps(body), headers=encoded)
    contract_answer(submitted)
    if submitted.status_code in (200, 202):
        await tracked.settle(path, submitted, headers)


@st.composite
def multipart_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    """``(content type, body)``: form parts with random names, values and filenames, under a
    boundary that may break RFC 2046 (too long, odd characters), sometimes cut or misdeclared."""
    boundary = draw(st.sampled_from(["x", "b" * 70, "b" * 71, "b" * 300, "a b", "é", "--==", "x;y"]))
    parts = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["model", "file", "image", "stream", "response_format", "n"]),
                st.one_of(st.none(), st.sampled_from(["a.wav", "", "é.png"])),
                st.binary(max_size=24),
            ),
            max_size=4,
        )
    )
    body = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    body = body[: draw(st.integers(min_value=0, max_value=len(body)))] if draw(st.booleans()) else body
    declared = draw(st.sampled_from([boundary, "other", ""]))
    return f"multipart/form-data; boundary={declared}", body


request_bodies = st.one_of(
    st.tuples(content_types, st.binary(max_size=200)),
    st.tuples(
        st.just("application/json"),
        st.dictionaries(st.sampled_from(["model", "stream", "input", "stream_format"]), json_values).map(
            lambda value: json.dumps({"model": "m", **value}).encode()
        ),
    ),
    multipart_bodies(),
)


@PROPERTY
@given(path=st.sampled_from(ALL_PATHS), request=request_bodies, headers=request_headers)
async def test_random_requests(
    tracked: Tracked, path: str, request: tuple[str | None, bytes], headers: dict[str, str]
) -> None:
    """Random bodies and content types on every route; an accepted one fails cleanly at the
    endpoint (it scripts no answer) or completes."""
    content_type, body = request
    encoded = tracked.encode(headers)
    if content_type is not None:
        encoded.append((b"content-type", content_type.encode("utf-8")))
    submitted = await tracked.http.post(tracked.url(path), content=body, headers=encoded)
    contract_answer(submitted)
    if submitted.status_code in (200, 202):
        await tracked.settle(path, submitted, headers)


@PROPERTY
@given(
    path=st.sampled_from(ALL_PATHS),
    method=st.sampled_from(["GET", "HEAD", "DELETE", "PUT"]),
    params=st.dictionaries(
        st.sampled_from(["limit", "wait", "cursor", "status", "x"]), header_text, max_size=3
    ),
    job_id=st.one_of(st.just(""), st.just("0e46c32d-0000-4000-8000-000000000000"), header_text),
    suffix=st.sampled_from(["", "/result"]),
    headers=request_headers,
)
@example(
    path="embeddings",
    method="GET",
    params={"limit": "²"},
    job_id="",
    suffix="",
    headers={"authorization": "k"},
)
@example(
    path="embeddings",
    method="GET",
    params={"wait": "\u0661"},
    job_id="0e46c32d-0000-4000-8000-000000000000",
    suffix="",
    headers={},
)
async def test_random_polls_and_lists(
    tracked: Tracked,
    path: str,
    method: str,
    params: dict[str, str],
    job_id: str,
    suffix: str,
    headers: dict[str, str],
) -> None:
    # "." and ".." are dot-segments: clients resolve them away, onto other routes
    quoted = urllib.parse.quote(job_id, safe="") if job_id not in (".", "..") else "x"
    url = tracked.url(path) + (f"/{quoted}{suffix}" if job_id else "")
    encoded = tracked.encode(headers)
    response = await tracked.http.request(method, url, params=params, headers=encoded)
    contract_answer(response)


@PROPERTY
@given(
    route=st.sampled_from(
        ["/v1/responses", "/openai/v1/responses", "/v1/messages", "/anthropic/v1/messages"]
    ),
    answer=answers,
    headers=request_headers,
)
async def test_random_upstream_answers_in_header_mode(
    tracked: Tracked, route: str, answer: dict[str, Any], headers: dict[str, str]
) -> None:
    """``x-bf-async: true`` on a provider route, retrieved with ``x-bf-async-id``: the retrieval
    may pass on the upstream's own status (that is the contract), never a 5xx of its own."""
    encoded = tracked.encode(headers)
    encoded += [(b"content-type", b"application/json"), (b"x-bf-async", b"true")]
    body = json.dumps({"model": "test/scripted", "answer": answer})
    submitted = await tracked.http.post(tracked.stack.url + route, content=body, headers=encoded)
    assert submitted.status_code < 500, submitted.text[:300]
    accepted = strict(submitted)  # errors come in the route's own shape (OpenAI, Anthropic)
    if submitted.status_code != 200:
        assert isinstance(accepted["error"]["message"], str), accepted
        return
    await tracked.stack.recorder.wait("finished", accepted["id"])
    owner = [(k, v) for k, v in encoded if k in (b"authorization", b"x-bf-vk")]
    retrieved = await tracked.http.post(
        tracked.stack.url + route, content=b"", headers=[*owner, (b"x-bf-async-id", accepted["id"].encode())]
    )
    job = await tracked.stack.middleware.store.get(accepted["id"])  # type: ignore[union-attr]
    assert job is not None and job.status.terminal
    if retrieved.status_code >= 500:  # only the endpoint's own status, passed on
        assert retrieved.status_code == job.status_code, retrieved.text[:300]
    if job.status.value == "failed" or job.raw_response is None:  # else: the endpoint's own bytes
        assert isinstance(strict(retrieved), dict)
