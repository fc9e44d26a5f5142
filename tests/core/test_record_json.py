"""``Job.from_record_json`` reads the same job with orjson (the ``fast-json`` extra) as with the
standard library, odd values included: what orjson refuses or reads differently (integers
beyond 64 bits) goes to ``json.loads``."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from bifrost_async.core import jobs
from bifrost_async.core.jobs import Job, JobStatus

RESULTS: list[Any] = [
    {"data": [{"embedding": [0.1, 1e-05, 1.5e16, -0.0, 3, 5e-324, 1.7976931348623157e308]}]},
    {"text": "héllo ✓ 🎉", "escaped": '"\\/\b\f\n\r\t\u0001'},
    {"huge": 2**70, "neg": -(2**65), "u64": 2**64 - 1, "i64": -(2**63), "near": 10**18},
    {"digits": "12345678901234567890", "id": 1234567890123456789},
    {"bad": [math.inf, -math.inf]},
    {"lone": "a\ud800b", "\udfffkey": 1},
    [[[[["deep"]]]]],
    None,
]


def record_of(result: Any) -> Job:
    return Job(
        id="0e46c32d-1111-4222-8333-444455556666",
        request_id="9e46c32d-1111-4222-8333-444455556666",
        request_type="embeddings",
        status=JobStatus.COMPLETED,
        created_at=1764769600.123456,
        ttl=3600,
        owner="a" * 64,
        extra_fields={"user": "x", "n": 7},
        started_at=1764769600.2,
        completed_at=1764769601.25,
        expires_at=1764773201.25,
        status_code=200,
        result=result,
        metadata={"webhook": "https://example.test/hook"},
        raw_response={"status": 200, "content_type": "application/json"},
        result_bytes=1234,
    )


@pytest.fixture(params=["stdlib", "orjson"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "stdlib":
        monkeypatch.setattr(jobs, "fast_loads", None)
    else:
        orjson = pytest.importorskip("orjson")
        monkeypatch.setattr(jobs, "fast_loads", orjson.loads)
    return str(request.param)


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types all the way down (``1 == 1.0`` is not enough here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b) and (not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b))


@pytest.mark.parametrize("result", RESULTS, ids=range(len(RESULTS)))
@pytest.mark.parametrize("as_text", [False, True], ids=["bytes", "str"])
def test_both_parsers_read_the_same_job(parser: str, result: Any, as_text: bool) -> None:
    job = record_of(result)
    text = job.to_record_json()
    read = Job.from_record_json(text if as_text else text.encode())
    reference = Job.from_record(json.loads(text))
    assert read == reference
    assert same(read.result, reference.result)
    assert same(read.to_record(), reference.to_record())


def test_nan_in_a_record_is_read_as_nan(parser: str) -> None:
    """``json.dumps`` writes ``NaN``; orjson refuses it, so the standard library reads it."""
    job = record_of(None)
    job.extra_fields = {"score": math.nan}
    read = Job.from_record_json(job.to_record_json().encode())
    assert math.isnan(read.extra_fields["score"])


def test_orjson_reads_plain_records_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path is taken for an ordinary record (else the extra would buy nothing)."""
    orjson = pytest.importorskip("orjson")
    calls: list[object] = []

    def counting(text: bytes | str) -> Any:
        calls.append(text)
        return orjson.loads(text)

    monkeypatch.setattr(jobs, "fast_loads", counting)
    monkeypatch.setattr(json, "loads", lambda *a, **k: pytest.fail("json.loads was used"))
    job = record_of({"object": "list", "data": [{"embedding": [0.1]}]})
    assert Job.from_record_json(job.to_record_json().encode()) == job
    assert len(calls) == 1
