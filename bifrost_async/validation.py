"""Light validation of a submitted body: parseable, not streaming, has a model and its file.

Deeper validation is the synchronous endpoint's job; its error comes back as a failed job.
"""

from __future__ import annotations

from typing import IO, Any

import ijson
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from .capture import CHUNK_SIZE, Headers, header_value
from .errors import AsyncJobError
from .routes import RouteSpec

#: Deepest JSON nesting accepted: deeper is refused (400) here rather than crashing the
#: recursive parser of the app the job replays to (Python's json stops near 1000 levels).
MAX_JSON_DEPTH = 512
#: Bytes handed to the JSON parser at a time. ijson rescans a token that spans its buffer from
#: the start on every refill, so a small buffer makes one long string quadratic (48 MB: 6 s at
#: 64 KiB, 0.5 s at 1 MiB); one buffer's parse is also the longest the parser holds the GIL.
JSON_BUFFER = 1024 * 1024
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
            fields, files = _scan_multipart(headers, body, spec)
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
        raise _bad(f"{spec.file_fields[0]} is required", param=spec.file_fields[0])
    return model.strip()


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


class _Container:
    """Stands for an object or array value where validation wants a scalar (never truthy)."""


def _scan_json(body: IO[bytes], spec: RouteSpec) -> dict[str, Any]:
    """The top-level ``model`` and stream field of a JSON object, read with a streaming parser:
    nothing else of the body is built (a 48 MB body costs no 48 MB of objects), and the parse
    is a loop of small steps, so a thread running it does not hold the event loop for long."""
    wanted = {"model"} | ({spec.stream_field} if spec.stream_field else set())
    fields: dict[str, Any] = {}
    depth = 0
    key: str | None = None
    try:
        for event, value in ijson.basic_parse(body, use_float=True, buf_size=JSON_BUFFER):
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
    except (ijson.JSONError, UnicodeDecodeError, ValueError):
        raise _bad("malformed JSON in request body", code="invalid_json") from None
    if depth != 0:  # the parser finished early (it never does for a complete value)
        raise _bad("malformed JSON in request body", code="invalid_json")
    return fields


class _PartScanner:
    """Multipart parser callbacks that keep only what validation needs: the values of the
    ``wanted`` text fields (bounded) and whether each ``file_fields`` part is present and
    non-empty. Nothing else of the body is kept, so a hostile body cannot grow memory."""

    def __init__(self, wanted: set[str], file_fields: set[str]) -> None:
        self.wanted = wanted
        self.file_fields = file_fields
        self.fields: dict[str, str] = {}
        self.files: set[str] = set()
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
        if name in self.file_fields and (self._size > 0 or options.get(b"filename")):
            self.files.add(name)
        if name in self.wanted and b"filename" not in options:
            self.fields.setdefault(name, bytes(self._data).decode("utf-8", "replace"))

    def on_end(self) -> None:
        self.finished = True


def _scan_multipart(headers: Headers, body: IO[bytes], spec: RouteSpec) -> tuple[dict[str, Any], set[str]]:
    """Stream the spool through a multipart parser; see :class:`_PartScanner`."""
    raw_type = header_value(headers, b"content-type") or b""
    content_type, params = parse_options_header(raw_type)
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise _bad("request body must be multipart/form-data with a boundary", code="invalid_multipart")
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
    parser = MultipartParser(boundary, callbacks)
    try:
        while chunk := body.read(CHUNK_SIZE):
            parser.write(chunk)
        parser.finalize()
    except (MultipartParseError, ValueError):
        raise _bad("malformed multipart body", code="invalid_multipart") from None
    if not scanner.finished:
        raise _bad("malformed multipart body: it ends before its closing boundary", code="invalid_multipart")
    return dict(scanner.fields), scanner.files
