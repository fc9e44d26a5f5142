"""Light validation of a submitted body: parseable, not streaming, has a model and its file.

Deeper validation is the synchronous endpoint's job; its error comes back as a failed job.
"""

from __future__ import annotations

import re
from typing import IO, Any

import ijson
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from bifrost_async.core.capture import CHUNK_SIZE, Headers, header_value
from bifrost_async.core.errors import AsyncJobError
from bifrost_async.core.jsonsafe import clean_text
from bifrost_async.service.routes import RouteSpec

#: Deepest JSON nesting accepted: deeper is refused (400) here rather than crashing the
#: recursive parser of the app the job replays to (Python's json stops near 1000 levels).
MAX_JSON_DEPTH = 512
#: Bytes handed to the JSON parser at a time. ijson rescans a token that spans its buffer from
#: the start on every refill, so a small buffer makes one long string quadratic (48 MB: 6 s at
#: 64 KiB, 0.5 s at 1 MiB); one buffer's parse is also the longest the parser holds the GIL.
#: A smaller body gets a buffer of its own size (:func:`_json_buffer`).
JSON_BUFFER = 1024 * 1024
#: Largest value kept from a multipart text field while validating (model names, flags).
_FIELD_VALUE_LIMIT = 4096
#: RFC 2046 section 5.1.1: 1 to 70 of these characters, the last one not a space.
_BOUNDARY = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")


def _bad(message: str, *, param: str | None = None, code: str = "invalid_request") -> AsyncJobError:
    return AsyncJobError(400, message, code=code, param=param)


def validate_body(spec: RouteSpec, headers: Headers, body: IO[bytes]) -> str:
    """Check ``body`` against the contract's submit rules and return the requested model.

    Raises :class:`AsyncJobError` (400) with the contract's message for a malformed body, a
    streaming request, a missing ``model`` or a missing file. Leaves ``body`` rewound.
    """
    text_fields: set[str] = set()
    try:
        if spec.body == "multipart":
            fields, files, text_fields = _scan_multipart(headers, body, spec)
        else:
            fields, files = _scan_json(body, spec), set()
    finally:
        body.seek(0)
    if spec.stream_field is not None and _asks_stream(spec, fields.get(spec.stream_field)):
        raise _bad(f"stream is not supported for async {spec.noun}", param=spec.stream_field)
    model = fields.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad("model is required", param="model")
    if spec.file_fields and not files.intersection(spec.file_fields):
        name = spec.file_fields[0]
        if text_fields.intersection(spec.file_fields):
            # curl -F file=path (the @ forgotten) sends the path as a text field
            raise _bad(
                f"{name} must be a file upload, not a text field: with curl, put @ before the "
                f"path (-F {name}=@path)",
                param=name,
            )
        raise _bad(f"{name} is required", param=name)
    # a lone surrogate ("\ud800" in the JSON) would travel into the job's extra_fields
    return clean_text(model.strip())


#: Strings that lax boolean parsers (pydantic, so FastAPI, vLLM and LiteLLM; form fields) read as
#: true: an app behind us would stream for ``"stream": "yes"`` as for ``"stream": true``.
_TRUTHY = frozenset({"true", "1", "yes", "on", "t", "y"})


def _asks_stream(spec: RouteSpec, value: Any) -> bool:
    wanted = spec.stream_value
    if wanted is True:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return value == 1
        return isinstance(value, str) and value.strip().lower() in _TRUTHY
    if isinstance(value, str) and isinstance(wanted, str):
        return value.strip().lower() == wanted.lower()
    return bool(value == wanted)


#: ijson's pure-Python back end, for the rare body its C back end cannot decode.
_PYTHON_JSON = ijson.get_backend("python")


class _CBackendLimit(Exception):
    """The C back end cannot read a body that is valid JSON (see :func:`_scan_json`)."""


class _Container:
    """Stands for an object or array value where validation wants a scalar (never truthy)."""


def _scan_json(body: IO[bytes], spec: RouteSpec) -> dict[str, Any]:
    """The top-level ``model`` and stream field of a JSON object, read with a streaming parser:
    nothing else of the body is built (a 48 MB body costs no 48 MB of objects), and the parse
    is a loop of small steps, so a thread running it does not hold the event loop for long."""
    try:
        return _scan_json_with(ijson.basic_parse, body, spec)
    except _CBackendLimit:
        # yajl (ijson's C back end) refuses two things that json.loads and the app behind us
        # accept: integers beyond 64 bits, and lone surrogate escapes ("\ud800", turned into bytes
        # it cannot decode). Read such a body as they do, with the pure-Python back end: slower,
        # but only for these bodies, and in a thread when the body is large.
        body.seek(0)
        return _scan_json_with(_PYTHON_JSON.basic_parse, body, spec)


def _json_buffer(body: IO[bytes]) -> int:
    """Bytes to hand the parser at a time for ``body``: :data:`JSON_BUFFER`, or the whole body
    plus one byte when it is smaller (one read; the extra byte sees the end). The C back end
    allocates and clears a buffer of this size per parse: 1 MiB for a 60-byte submit cost
    ~20 µs of every job (``bench/NOTES.md``)."""
    size = body.seek(0, 2)
    body.seek(0)
    return min(JSON_BUFFER, size + 1)


def _scan_json_with(basic_parse: Any, body: IO[bytes], spec: RouteSpec) -> dict[str, Any]:
    wanted = {"model"} | ({spec.stream_field} if spec.stream_field else set())
    fields: dict[str, Any] = {}
    depth = 0
    key: str | None = None
    try:
        for event, value in basic_parse(body, use_float=True, buf_size=_json_buffer(body)):
            if depth == 0 and event != "start_map":
                raise _bad("request body must be a JSON object", code="invalid_json")
            if event in ("start_map", "start_array"):
                if depth == 1 and key in wanted:
                    fields[key] = _Container()  # last one wins, as json.loads has it
                depth += 1
                if depth > MAX_JSON_DEPTH:  # same message: deep nesting is what json.loads refused too
                    raise _bad("malformed JSON in request body", code="invalid_json")
            elif event in ("end_map", "end_array"):
                depth -= 1
            elif depth == 1 and event == "map_key":
                key = value
            elif depth == 1 and key in wanted:
                fields[key] = value
    except (ijson.JSONError, UnicodeDecodeError, ValueError) as exc:
        if basic_parse is not _PYTHON_JSON.basic_parse and (
            isinstance(exc, UnicodeDecodeError) or "integer overflow" in str(exc)
        ):
            raise _CBackendLimit from None
        raise _bad("malformed JSON in request body", code="invalid_json") from None
    if depth != 0:  # the parser finished early (it never does for a complete value)
        raise _bad("malformed JSON in request body", code="invalid_json")
    return fields


class _PartScanner:
    """Multipart parser callbacks that keep only what validation needs: the values of the
    ``wanted`` text fields (bounded), which ``file_fields`` parts are files, and which came as
    text fields instead. Nothing else of the body is kept, so a hostile body cannot grow memory.

    A part is a file when its ``Content-Disposition`` has a ``filename``, the rule of
    python-multipart's form parser and so of Starlette and FastAPI: a part without one reaches
    the endpoint as a string, and its "file is required" would only come back as a failed job."""

    def __init__(self, wanted: set[str], file_fields: set[str]) -> None:
        self.wanted = wanted
        self.file_fields = file_fields
        self.fields: dict[str, str] = {}
        self.files: set[str] = set()
        self.text_fields: set[str] = set()
        self.finished = False
        self._header = bytearray()
        self._headers: list[bytes] = []
        self._data = bytearray()
        self._size = 0

    def on_part_begin(self) -> None:
        self._headers.clear()
        self._data.clear()
        self._size = 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._add_header(data[start:end])

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._add_header(b":" + data[start:end] if not self._header.count(b":") else data[start:end])

    def _add_header(self, piece: bytes) -> None:
        self._header += piece
        if len(self._header) > _FIELD_VALUE_LIMIT:
            raise ValueError("multipart part header too large")

    def on_header_end(self) -> None:
        self._headers.append(bytes(self._header))
        self._header.clear()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if len(self._data) < _FIELD_VALUE_LIMIT:
            self._data += data[start : min(end, start + _FIELD_VALUE_LIMIT - len(self._data))]

    def on_part_end(self) -> None:
        options: dict[bytes, bytes] = {}
        for header in self._headers:
            key, _, value = header.partition(b":")
            if key.strip().lower() == b"content-disposition":
                options = parse_options_header(value.strip())[1]
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name in self.file_fields:
            (self.files if b"filename" in options else self.text_fields).add(name)
        if name in self.wanted and b"filename" not in options:
            self.fields.setdefault(name, bytes(self._data).decode("utf-8", "replace"))

    def on_end(self) -> None:
        self.finished = True


def _scan_multipart(
    headers: Headers, body: IO[bytes], spec: RouteSpec
) -> tuple[dict[str, Any], set[str], set[str]]:
    """Stream the spool through a multipart parser; see :class:`_PartScanner`. Returns the
    wanted fields' values, the file fields sent as files and those sent as text."""
    raw_type = header_value(headers, b"content-type") or b""
    content_type, params = parse_options_header(raw_type)
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise _bad("request body must be multipart/form-data with a boundary", code="invalid_multipart")
    if not _BOUNDARY.fullmatch(boundary):
        # python-multipart refuses boundaries over 256 bytes with an exception of its own
        raise _bad(
            "multipart boundary must be 1 to 70 characters of RFC 2046's set (letters, digits, "
            "'()+_,-./:=? and inner spaces)",
            code="invalid_multipart",
        )
    wanted = {"model"} | ({spec.stream_field} if spec.stream_field else set())
    scanner = _PartScanner(wanted, set(spec.file_fields))
    callbacks: Any = {
        name: getattr(scanner, name)
        for name in (
            "on_part_begin",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_part_data",
            "on_part_end",
            "on_end",
        )
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        while chunk := body.read(CHUNK_SIZE):
            parser.write(chunk)
        parser.finalize()
    except (FormParserError, ValueError):  # every python-multipart error is a FormParserError
        raise _bad("malformed multipart body", code="invalid_multipart") from None
    if not scanner.finished:
        raise _bad("malformed multipart body: it ends before its closing boundary", code="invalid_multipart")
    return dict(scanner.fields), scanner.files, scanner.text_fields
