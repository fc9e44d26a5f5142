"""Capture a request body into a spool (memory up to a threshold, then a temporary file)."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import AsyncIterator
from typing import IO, Any

from bifrost_async.core.errors import AsyncJobError
from bifrost_async.core.numbers import ascii_int

CHUNK_SIZE = 64 * 1024

Headers = list[tuple[bytes, bytes]]


class ClientDisconnected(Exception):
    """The client went away before its request body was complete."""


@dataclasses.dataclass
class CapturedRequest:
    """A request held for replay: its head, and its body in a spool that the job owns.

    ``path`` is the synchronous path the job replays to. ``scope`` keeps the original ASGI scope's
    connection details (server, client, scheme, state) for in-process replay. The body is read
    from the spool in chunks, never as one bytes object.
    """

    method: str
    path: str
    query_string: bytes
    headers: Headers
    body: IO[bytes]
    body_size: int
    scope: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: The submitting connection's remote address; ``headers`` already carry the
    #: ``X-Forwarded-For`` that :mod:`bifrost_async.service.forwarding` derives from it.
    peer: str | None = None

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lowercase), or ``None``."""
        return header_value(self.headers, name)

    def rewind(self) -> None:
        self.body.seek(0)

    async def iter_body(self, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Yield the body in chunks from the start of the spool."""
        self.body.seek(0)
        while True:
            chunk = self.body.read(chunk_size)
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        """Drop the spool (deletes its temporary file, if it rolled over to disk)."""
        self.body.close()


def header_value(headers: Headers, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lowercase) in an ASGI header list."""
    for key, value in headers:
        if key == name:
            return value
    return None


def too_large(limit: int) -> AsyncJobError:
    return AsyncJobError(
        413,
        f"request body exceeds the limit of {limit} bytes",
        code="request_too_large",
    )


async def spool_body(
    receive: Any,
    headers: Headers,
    *,
    max_bytes: int,
    memory_bytes: int,
    spool_dir: str | None = None,
) -> tuple[IO[bytes], int]:
    """Read the ASGI request body into a spooled temporary file.

    Raises :class:`AsyncJobError` (413) as soon as the body is known to exceed ``max_bytes``
    (from ``Content-Length`` before reading, else while reading), and
    :class:`ClientDisconnected` if the client leaves mid-body. The spool is closed on error.
    """
    declared = header_value(headers, b"content-length")
    if declared is not None:
        size_declared = ascii_int(declared.decode("latin-1"))
        if size_declared is None:
            raise AsyncJobError(
                400,
                "Content-Length must be a non-negative integer of ASCII digits",
                code="bad_request",
                param="Content-Length",
            )
        if size_declared > max_bytes:
            raise too_large(max_bytes)
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - handed to the caller
        max_size=memory_bytes, dir=spool_dir, prefix="bifrost-async-"
    )
    size = 0
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > max_bytes:
                    raise too_large(max_bytes)
                spool.write(chunk)
            if not message.get("more_body", False):
                break
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, size
