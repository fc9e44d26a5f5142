"""What an ``Idempotency-Key`` compares: a digest of what a submit *means*, not of its bytes.

Two submits of the same request must match even when a client frames them differently:

- **multipart** (``multipart/form-data``): each part's name, file name, content type and a
  SHA-256 of its content, with the parts ordered by name (a stable sort: parts that share a name
  keep their order, which may matter), so neither the boundary (curl, httpx and browsers pick a
  new random one per request) nor the order of differently named parts matters;
- **JSON**: the parsed value, with object members compared as a set (key order does not matter)
  and whitespace ignored; numbers compare by value (``1``, ``1.0``), strings after unescaping;
- anything else, or a body that does not parse: its raw bytes.

The digest is built while the body streams by (``feed``), in memory proportional to the number
of JSON members or multipart parts, never to the body: a repeated submit can be answered from
its digest without its body ever being spooled.
"""

from __future__ import annotations

import hashlib
from typing import Any

import ijson
from ijson.utils import sendable_list
from python_multipart.multipart import MultipartParser, parse_options_header

from bifrost_async.core.capture import Headers, header_value
from bifrost_async.service.routes import RouteSpec
from bifrost_async.service.validation import JSON_BUFFER

#: A part header longer than this is not a well-formed request: digest the raw bytes instead.
_HEADER_LIMIT = 16 * 1024


def _h(*pieces: bytes) -> bytes:
    digest = hashlib.sha256()
    for piece in pieces:  # length-prefixed, so that no two sequences of pieces collide
        digest.update(len(piece).to_bytes(8, "big") + piece)
    return digest.digest()


class _JsonDigest:
    """An order-independent digest of a JSON value, from ijson's streaming events (fed in
    pieces of :data:`~bifrost_async.service.validation.JSON_BUFFER`, for the reason given there)."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self._events = sendable_list()
        self._parser = ijson.basic_parse_coro(self._events, use_float=True)
        #: One frame per open container, folded as members arrive (memory: the depth, never the
        #: member count): an array's running hash; an object's member digests summed modulo
        #: 2**256 (a multiset hash: the order of members does not change it) and counted.
        self._stack: list[_Frame] = []
        self.root: bytes | None = None

    def feed(self, chunk: bytes) -> None:
        self._pending += chunk
        if len(self._pending) >= JSON_BUFFER:
            self._parser.send(bytes(self._pending))
            self._pending.clear()
            self._drain()

    def finish(self) -> bytes:
        if self._pending:
            self._parser.send(bytes(self._pending))
        self._parser.close()
        self._drain()
        if self.root is None or self._stack:
            raise ValueError("incomplete JSON")
        return self.root

    def _drain(self) -> None:
        for event, value in self._events:
            self._event(event, value)
        del self._events[:]

    def _event(self, event: str, value: Any) -> None:
        if event in ("start_map", "start_array"):
            self._stack.append(_Frame(event == "start_map"))
        elif event == "map_key":
            self._stack[-1].key = str(value).encode("utf-8", "surrogatepass")
        elif event in ("end_map", "end_array"):
            self._add(self._stack.pop().digest())
        elif self._stack and not self._stack[-1].is_map:  # the bulk of big bodies: no hash each
            self._stack[-1].add_scalar(_scalar(event, value))
        else:
            self._add(_h(b"s", _scalar(event, value)))

    def _add(self, digest: bytes) -> None:
        if self._stack:
            self._stack[-1].add(digest)
        else:
            self.root = digest


class _Frame:
    """An open JSON object or array (see :class:`_JsonDigest`)."""

    __slots__ = ("count", "is_map", "key", "running", "total")

    def __init__(self, is_map: bool) -> None:
        self.is_map = is_map
        self.key = b""
        self.count = 0
        self.total = 0
        self.running = hashlib.sha256(b"[")

    def add(self, digest: bytes) -> None:
        self.count += 1
        if self.is_map:
            member = _h(self.key, digest)
            self.total = (self.total + int.from_bytes(member, "big")) % 2**256
        else:
            self.running.update(b"d" + digest)

    def add_scalar(self, text: bytes) -> None:
        """An array's scalar member, folded into the running hash without a digest of its own
        (length-prefixed and tagged, so it cannot be confused with a nested digest)."""
        self.count += 1
        self.running.update(b"s" + len(text).to_bytes(8, "big") + text)

    def digest(self) -> bytes:
        if self.is_map:
            return _h(b"{", self.count.to_bytes(8, "big"), self.total.to_bytes(32, "big"))
        return _h(b"[", self.count.to_bytes(8, "big"), self.running.digest())


def _scalar(event: str, value: Any) -> bytes:
    if event == "number" and isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)  # 1.0 and 1 are the same number to every JSON reader we replay to
    return f"{event}:{value!r}".encode("utf-8", "surrogatepass")


class _MultipartDigest:
    """Per-part digests of a multipart body (see the module docstring)."""

    def __init__(self, boundary: bytes) -> None:
        self.parts: list[tuple[bytes, bytes]] = []  # (name, digest of name/filename/type/content)
        self.finished = False
        self._header = bytearray()
        self._headers: list[bytes] = []
        self._content = hashlib.sha256()
        callbacks: Any = {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._header_piece(data[start:end], b""),
            "on_header_value": lambda data, start, end: self._header_piece(data[start:end], b":"),
            "on_header_end": self._header_end,
            "on_part_data": lambda data, start, end: self._content.update(data[start:end]),
            "on_part_end": self._end,
            "on_end": self._done,
        }
        self._parser = MultipartParser(boundary, callbacks)

    def feed(self, chunk: bytes) -> None:
        self._parser.write(chunk)

    def finish(self) -> bytes:
        self._parser.finalize()
        if not self.finished:
            raise ValueError("multipart body ends before its closing boundary")
        ordered = sorted(self.parts, key=lambda part: part[0])  # stable: same names keep order
        return _h(b"multipart", *(digest for _, digest in ordered))

    def _begin(self) -> None:
        self._headers.clear()
        self._content = hashlib.sha256()

    def _header_piece(self, piece: bytes, separator: bytes) -> None:
        if separator and b":" not in self._header:
            self._header += separator
        self._header += piece
        if len(self._header) > _HEADER_LIMIT:
            raise ValueError("multipart part header too large")

    def _header_end(self) -> None:
        self._headers.append(bytes(self._header))
        self._header.clear()

    def _end(self) -> None:
        name = filename = content_type = b""
        for header in self._headers:
            key, _, value = header.partition(b":")
            key = key.strip().lower()
            if key == b"content-disposition":
                options = parse_options_header(value.strip())[1]
                name, filename = options.get(b"name", b""), options.get(b"filename", b"")
            elif key == b"content-type":
                content_type = value.strip().lower()
        self.parts.append((name, _h(name, filename, content_type, self._content.digest())))

    def _done(self) -> None:
        self.finished = True


class Fingerprint:
    """Feed a submit's body chunk by chunk, then :meth:`hexdigest` names what it means."""

    def __init__(self, spec: RouteSpec, query_string: bytes, headers: Headers) -> None:
        self._prefix = _h(spec.request_type.encode(), query_string)
        self._raw = hashlib.sha256()
        content_type, params = parse_options_header(header_value(headers, b"content-type") or b"")
        self._meaning: _JsonDigest | _MultipartDigest | None = None
        if content_type == b"multipart/form-data" and params.get(b"boundary"):
            self._meaning = _MultipartDigest(params[b"boundary"])
        elif spec.body == "json":  # what the route reads, whatever the client declared
            self._meaning = _JsonDigest()

    def feed(self, chunk: bytes) -> None:
        """Take the next piece of the body."""
        self._raw.update(chunk)
        if self._meaning is not None:
            try:
                self._meaning.feed(chunk)
            except Exception:  # not what its type says: compare its bytes
                self._meaning = None

    def hexdigest(self) -> str:
        """The fingerprint (call once, after the last chunk)."""
        if self._meaning is not None:
            try:
                return _h(self._prefix, b"meaning", self._meaning.finish()).hex()
            except Exception:  # malformed: validation refuses it anyway; compare its bytes
                pass
        return _h(self._prefix, b"raw", self._raw.digest()).hex()
