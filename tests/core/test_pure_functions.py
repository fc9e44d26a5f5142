"""Unit tests of the pure parts: TTL parsing, result encoding, error mapping, routes, jobs."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bifrost_async.core.outcome import CapturedResponse, encode_result, error_from_body
from bifrost_async.errors import model_extra_fields
from bifrost_async.jobs import TRANSITIONS, Job, JobStatus, is_job_id, may_move, new_job_id, rfc3339
from bifrost_async.service.jobs_service import parse_ttl
from bifrost_async.service.routes import DEFAULT_ROUTES, RouteSpec, RouteTable


@given(st.binary(max_size=40))
def test_parse_ttl_never_fails_and_stays_in_range(raw: bytes) -> None:
    assert 1 <= parse_ttl(raw, 3600, 86400) <= 86400


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, 3600),
        (b"", 3600),
        (b"0", 3600),
        (b"-0", 3600),
        (b"000", 3600),
        (b"007", 7),
        (b"1e3", 3600),
        (b"86400", 86400),
        (b"86401", 86400),
        (b"1_000", 3600),
        (b"\xd9\xa3", 3600),
    ],
)
def test_parse_ttl_cases(raw: bytes | None, expected: int) -> None:
    assert parse_ttl(raw, 3600, 86400) == expected


def response(body: bytes, content_type: bytes | None, status: int = 200) -> CapturedResponse:
    headers = [(b"content-type", content_type)] if content_type is not None else []
    return CapturedResponse(status=status, headers=headers, body=body)


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b'{"text": "hi"}', b"application/json", {"text": "hi"}),
        (b"[1, 2]", b"application/json; charset=utf-8", [1, 2]),
        (b'{"a": 1}', b"application/problem+json", {"a": 1}),
        (b"hello", b"text/plain; charset=utf-8", {"text": "hello"}),
        (b"WEBVTT\n", b"text/vtt", {"text": "WEBVTT\n"}),
        ("h\u00e9".encode("latin-1"), b"text/plain; charset=latin-1", {"text": "h\u00e9"}),
        (b"not json", b"application/json", {"text": "not json"}),
        (b'{"x": 1}', None, {"x": 1}),
        (b"plain words", None, {"text": "plain words"}),
    ],
)
def test_encode_result(body: bytes, content_type: bytes | None, expected: object) -> None:
    assert encode_result(response(body, content_type)) == expected


def test_encode_binary_results() -> None:
    audio = bytes(range(256))
    assert encode_result(response(audio, b"audio/wav")) == {
        "audio": base64.b64encode(audio).decode(),
        "content_type": "audio/wav",
    }
    assert encode_result(response(b"\xff\xfe\x00", None)) == {
        "audio": base64.b64encode(b"\xff\xfe\x00").decode(),
        "content_type": "application/octet-stream",
    }


def test_error_mapping_shapes() -> None:
    extra = {"request_type": "embedding"}
    bifrost = error_from_body(
        429,
        json.dumps(
            {
                "event_id": "ev1",
                "type": "rate",
                "is_bifrost_error": True,
                "error": {"message": "slow down", "type": "rate_limit"},
                "extra_fields": {"provider": "openai"},
            }
        ).encode(),
        extra,
    )
    assert bifrost["event_id"] == "ev1" and bifrost["type"] == "rate"
    assert bifrost["error"] == {"message": "slow down", "type": "rate_limit"}
    assert bifrost["extra_fields"] == {"request_type": "embedding", "provider": "openai"}
    assert error_from_body(422, b'{"detail": "bad field"}', extra)["error"]["message"] == "bad field"
    assert error_from_body(400, b'{"error": "plain"}', extra)["error"]["message"] == "plain"
    assert error_from_body(500, b"", extra)["error"]["message"] == "request failed with HTTP 500"
    assert error_from_body(502, b"x" * 5000, extra)["error"]["message"] == "x" * 2000
    assert error_from_body(400, b'{"error": {}}', extra)["error"]["message"] == "request failed with HTTP 400"


def test_model_extra_fields() -> None:
    assert model_extra_fields("openai/whisper-1", "transcription") == {
        "provider": "openai",
        "model_requested": "whisper-1",
        "request_type": "transcription",
    }
    assert model_extra_fields("whisper-1", "transcription") == {
        "model_requested": "whisper-1",
        "request_type": "transcription",
    }
    assert model_extra_fields("/x", "ocr") == {"model_requested": "/x", "request_type": "ocr"}


def test_route_table_matching() -> None:
    table = RouteTable()
    assert len(list(table)) == 11
    spec, job_id = table.match("/v1/async/chat/completions")
    assert spec is not None and spec.request_type == "chat_completion" and job_id is None
    spec, job_id = table.match("/v1/async/chat/completions/abc")
    assert spec is not None and spec.request_type == "chat_completion" and job_id == "abc"
    assert table.match("/v1/async/completions/abc")[0].request_type == "text_completion"  # type: ignore[union-attr]
    assert table.match("/v1/async/chat")[0] is None
    assert table.match("/v1/async/audio/transcriptions/a/b")[0] is None
    assert not table.owns("/v1/asyncx") and table.owns("/v1/async/x")


def test_route_table_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="unknown request type"):
        RouteTable(overrides={"nope": "/x"})
    with pytest.raises(ValueError, match="share the path"):
        RouteTable(extra=[RouteSpec("other", "embeddings", "/v1/other")])
    with pytest.raises(ValueError, match="must start with"):
        RouteSpec("x", "x", "x")
    assert {spec.request_type for spec in DEFAULT_ROUTES} == {
        "text_completion",
        "chat_completion",
        "responses",
        "embedding",
        "speech",
        "transcription",
        "image_generation",
        "image_edit",
        "image_variation",
        "rerank",
        "ocr",
    }


def test_job_ids_and_times() -> None:
    ids = {new_job_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(is_job_id(i) for i in ids)
    for text in ids:  # what str(uuid.uuid4()) gives: version 4, RFC 4122 variant, lowercase
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text
    assert not is_job_id("00000000-0000-0000-0000-000000000000")
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1.2345) == "1970-01-01T00:00:01.234Z"


def test_status_only_moves_forward() -> None:
    order = [JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.COMPLETED]
    for earlier, later in itertools.pairwise(order):
        assert may_move(earlier, later) and not may_move(later, earlier)
    assert not may_move(JobStatus.COMPLETED, JobStatus.FAILED)
    assert may_move(JobStatus.PENDING, JobStatus.FAILED)
    assert all(not TRANSITIONS[s] for s in (JobStatus.COMPLETED, JobStatus.FAILED))


def test_public_view_omits_absent_fields_and_owner() -> None:
    job = Job(
        id=new_job_id(),
        request_id="r",
        request_type="ocr",
        status=JobStatus.PENDING,
        created_at=0.0,
        ttl=5,
        owner="secret-digest",
    )
    assert job.to_public() == {
        "id": job.id,
        "request_id": "r",
        "status": "pending",
        "created_at": "1970-01-01T00:00:00.000Z",
    }
    assert Job.from_record(job.to_record()) == job


def test_route_table_refuses_empty_segments() -> None:
    table = RouteTable()
    for path in (
        "/v1/async/chat/completions/",
        "/v1/async/chat/completions//",
        "/v1/async//chat/completions",
        "/v1/async/audio/transcriptions///",
    ):
        assert table.match(path) == (None, None), path


def test_to_record_json_is_the_json_of_to_record_and_the_stored_format_is_unchanged() -> None:
    @dataclasses.dataclass
    class Point:
        x: int
        y: list[int]

    job = Job(
        id="j",
        request_id="r",
        request_type="chat",
        status=JobStatus.COMPLETED,
        created_at=1.5,
        ttl=60,
        owner="o",
        extra_fields={"model": "m", "tags": ("a", "b")},
        completed_at=2.25,
        expires_at=62.25,
        status_code=200,
        result={"choices": [{"text": "é", "point": Point(1, [2])}], "n": None},
        error=None,
        metadata={"webhook": "x"},
        raw_response={"status": 200},
        result_bytes=10,
    )
    # what the stores persisted before issue 15: the JSON of dataclasses.asdict, byte for byte
    before = dataclasses.asdict(job) | {"status": "completed"}
    assert job.to_record_json() == json.dumps(before, separators=(",", ":"))
    assert Job.from_record(json.loads(job.to_record_json())).to_record_json() == job.to_record_json()
    job.result = {"n": [1, 2.5, "x"]}
    assert job.to_record_json() == json.dumps(job.to_record(), separators=(",", ":"))
    job.result = {"bad": object()}
    with pytest.raises(TypeError):
        job.to_record_json()


def test_to_record_holds_the_jobs_own_values_and_copy_is_shallow() -> None:
    job = Job(
        id="j",
        request_id="r",
        request_type="chat",
        status=JobStatus.PENDING,
        created_at=1.5,
        ttl=60,
        extra_fields={"model": "m"},
    )
    record = job.to_record()
    assert list(record) == [field.name for field in dataclasses.fields(Job)]
    assert record["status"] == "pending"
    assert record["extra_fields"] is job.extra_fields  # no deep copy (issue 15, bench/record_copy.py)
    assert Job.from_record(record) == job

    clone = job.copy()
    assert clone == job and clone is not job and type(clone) is Job
    clone.status = JobStatus.PROCESSING
    assert job.status is JobStatus.PENDING
    assert clone.extra_fields is job.extra_fields
