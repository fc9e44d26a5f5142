"""Light validation of a submitted body: parseable, not streaming, has a model and its file.

Deeper validation is the synchronous endpoint's job; its error comes back as a failed job.
"""

from __future__ import annotations

import json
from typing import IO, Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from .capture import CHUNK_SIZE, Headers, header_value
from .errors import AsyncJobError
from .routes import RouteSpec

#: Largest value kept from a multipart text field while validating (model names, flags).
_FIELD_VALUE_LIMIT = 4096


def _bad(message: str, *, param: str | None = None, code: str = "invalid_request") -> AsyncJobError:
    return AsyncJobError(400, message, code=code, param=param)


def validate_body(spec: RouteSpec, headers: Headers, body: IO[bytes]) -> str:
    """Check ``body`` against the contract's submit rules and return the requested model.

    Raises :class:`AsyncJobError` (400) with the contract's message for a malformed body, a
    streaming request, a missing ``model`` or a missing file. Leaves ``body`` rewound.
    """
    try:
        if spec.body == "multipart":
            fields, files = _scan_multipart(headers, body)
        else:
            fields, files = _parse_json(body), set()
    finally:
        body.seek(0)
    if spec.stream_field is not None and _asks_stream(spec, fields.get(spec.stream_field)):
        raise _bad(f"stream is not supported for async {spec.noun}", param=spec.stream_field)
    model = fields.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad("model is required", param="model")
    if spec.file_fields and not files.intersection(spec.file_fields):
        raise _bad(f"{spec.file_fields[0]} is required", param=spec.file_fields[0])
    return model.strip()


def _asks_stream(spec: RouteSpec, value: Any) -> bool:
    if spec.body == "multipart" and isinstance(value, str):
        return value.strip().lower() == str(spec.stream_value).lower()
    return value is spec.stream_value if isinstance(spec.stream_value, bool) else value == spec.stream_value


def _parse_json(body: IO[bytes]) -> dict[str, Any]:
    try:
        value = json.loads(body.read())
    except (ValueError, UnicodeDecodeError):
        raise _bad("malformed JSON in request body", code="invalid_json") from None
    if not isinstance(value, dict):
        raise _bad("request body must be a JSON object", code="invalid_json")
    return value


def _scan_multipart(headers: Headers, body: IO[bytes]) -> tuple[dict[str, Any], set[str]]:
    """Stream the spool through a multipart parser, keeping only small text fields' values and
    the names of file parts (never file contents)."""
    raw_type = header_value(headers, b"content-type") or b""
    content_type, params = parse_options_header(raw_type)
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise _bad("request body must be multipart/form-data with a boundary", code="invalid_multipart")

    fields: dict[str, Any] = {}
    files: set[str] = set()
    state: dict[str, Any] = {"header_name": b"", "header_value": b"", "headers": {}, "data": []}
    state["size"] = 0
    finished: list[bool] = []

    def on_part_begin() -> None:
        state.update(headers={}, data=[], size=0)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["header_name"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["header_value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["header_name"].lower()] = state["header_value"]
        state.update(header_name=b"", header_value=b"")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["size"] += end - start
        if state["size"] <= _FIELD_VALUE_LIMIT:
            state["data"].append(data[start:end])

    def on_part_end() -> None:
        disposition = state["headers"].get(b"content-disposition", b"")
        _, options = parse_options_header(disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options or state["size"] > _FIELD_VALUE_LIMIT:
            if state["size"] > 0 or options.get(b"filename"):
                files.add(name)
        else:
            value = b"".join(state["data"]).decode("utf-8", "replace")
            fields.setdefault(name, value)
            if value:
                files.add(name)  # a non-empty plain field named like the file field still counts

    def on_end() -> None:
        finished.append(True)

    callbacks: Any = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_end": on_end,
    }
    parser = MultipartParser(boundary, callbacks)
    try:
        while chunk := body.read(CHUNK_SIZE):
            parser.write(chunk)
        parser.finalize()
    except (MultipartParseError, ValueError):
        raise _bad("malformed multipart body", code="invalid_multipart") from None
    if not finished:
        raise _bad("malformed multipart body: it ends before its closing boundary", code="invalid_multipart")
    return fields, files
