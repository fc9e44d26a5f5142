"""Idempotent submit (``Idempotency-Key``, after the IETF httpapi draft).

The same key from the same owner with the same request returns the job the first submit made,
and the request never runs twice; the same key with a different request is a 422. The key is
scoped by owner (the claim is a digest of both), and its claim lives exactly as long as its job
(``JobStore.claim_idempotency_key``); a submit refused after claiming releases its claim, so a
retry is free at once. "The same request" is what the request means (``fingerprint.py``): the
route, the query string, and the parsed JSON or the multipart fields and files, whatever the
framing. The body itself is never kept, logged or stored.

A repeat is recognised before its body is spooled (:func:`repeat_of`): the claim is looked up
first, and a held one is answered from a digest of the body as it streams in, so a retry costs
no queue slot, no share of the caller's quota and no disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from typing import IO, Any

from bifrost_async.core.capture import ClientDisconnected, Headers, header_value, too_large
from bifrost_async.core.errors import AsyncJobError
from bifrost_async.core.jobs import Job
from bifrost_async.core.store import JobStore
from bifrost_async.service.fingerprint import Fingerprint
from bifrost_async.service.routes import RouteSpec
from bifrost_async.service.validation import JSON_BUFFER

HEADER = b"idempotency-key"
#: Seconds a claim waits for its job to be created before it lapses (the process died between
#: the claim and the store write; a refused submit releases its claim at once).
CLAIM_WINDOW = 30.0
_KEY = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,254}")


class IdempotentReplay(Exception):
    """The submit repeats an earlier one: answer with ``job``, run nothing."""

    def __init__(self, job: Job) -> None:
        super().__init__(job.id)
        self.job = job


def requested_key(headers: Headers) -> str | None:
    """The ``Idempotency-Key`` header, validated (1 to 255 printable ASCII characters)."""
    raw = header_value(headers, HEADER)
    if raw is None:
        return None
    key = raw.decode("latin-1").strip()
    if not _KEY.fullmatch(key):
        raise AsyncJobError(
            400,
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
            code="invalid_idempotency_key",
            param="Idempotency-Key",
        )
    return key


def claim_digest(owner: str, key: str, secret: str | None) -> str:
    """The store's name for (owner, key): another owner's same key is another claim."""
    message = f"{owner}\n{key}".encode()
    if secret:
        return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return hashlib.sha256(message).hexdigest()


def spool_fingerprint(spec: RouteSpec, query_string: bytes, headers: Headers, body: IO[bytes]) -> str:
    """The fingerprint of a spooled body (read in chunks, then rewound). Blocking: the service
    runs it in a thread for large bodies."""
    digest = Fingerprint(spec, query_string, headers)
    body.seek(0)
    while chunk := body.read(JSON_BUFFER):
        digest.feed(chunk)
    body.seek(0)
    return digest.hexdigest()


async def stream_fingerprint(
    spec: RouteSpec, query_string: bytes, headers: Headers, receive: Any, max_bytes: int
) -> str:
    """The fingerprint of a body read straight from the client, never written anywhere (a
    repeat is answered from it). 413 past ``max_bytes``, as a spooled submit would get."""
    digest = Fingerprint(spec, query_string, headers)
    size = 0
    pending = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise too_large(max_bytes)
        pending += chunk
        last = not message.get("more_body", False)
        if len(pending) >= JSON_BUFFER or last:
            # parsing and hashing a buffer is CPU work: in a thread, so the loop stays free
            await asyncio.to_thread(digest.feed, bytes(pending))
            pending.clear()
        if last:
            return await asyncio.to_thread(digest.hexdigest)


async def repeat_answer(store: JobStore, held_job: str, same: bool) -> Exception:
    """What a submit whose key is held answers: the earlier job (:class:`IdempotentReplay`),
    422 for a different request under the same key, 409 while the earlier one is being stored."""
    if not same:
        return AsyncJobError(
            422,
            "this Idempotency-Key was already used with a different request",
            code="idempotency_key_reused",
            param="Idempotency-Key",
        )
    earlier = await store.get(held_job)
    if earlier is None:  # claimed, but its job is not stored yet
        return AsyncJobError(
            409,
            "a request with this Idempotency-Key is still being accepted; retry",
            type="conflict_error",
            code="idempotency_key_in_use",
            headers={"Retry-After": "1"},
        )
    return IdempotentReplay(earlier)
