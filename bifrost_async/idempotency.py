"""Idempotent submit (``Idempotency-Key``, after the IETF httpapi draft).

The same key from the same owner with the same request returns the job the first submit made,
and the request never runs twice; the same key with a different request is a 422. The key is
scoped by owner (the claim is a digest of both), and its claim lives exactly as long as its job
(``JobStore.claim_idempotency_key``). What identifies "the same request" is a SHA-256 over the
route, the query string and the body, read from the spool in chunks: the body itself is never
kept, logged or stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from .capture import CHUNK_SIZE, CapturedRequest, header_value
from .errors import AsyncJobError
from .jobs import Job
from .store import JobStore

HEADER = b"idempotency-key"
#: Seconds a claim waits for its job to be created before it lapses (the submit failed between
#: the claim and the store write, e.g. the store was full).
CLAIM_WINDOW = 30.0
_KEY = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,254}")


class IdempotentReplay(Exception):
    """The submit repeats an earlier one: answer with ``job``, run nothing."""

    def __init__(self, job: Job) -> None:
        super().__init__(job.id)
        self.job = job


def requested_key(request: CapturedRequest) -> str | None:
    """The ``Idempotency-Key`` header, validated (1 to 255 printable ASCII characters)."""
    raw = header_value(request.headers, HEADER)
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


def fingerprint(request_type: str, request: CapturedRequest) -> str:
    """SHA-256 of the route, query string and body (read from the spool, then rewound)."""
    digest = hashlib.sha256()
    digest.update(request_type.encode() + b"\0" + request.query_string + b"\0")
    request.rewind()
    while chunk := request.body.read(CHUNK_SIZE):
        digest.update(chunk)
    request.rewind()
    return digest.hexdigest()


async def claim_or_replay(store: JobStore, job: Job, request: CapturedRequest, secret: str | None) -> None:
    """If the submit carries an ``Idempotency-Key``, claim it for ``job`` (setting
    ``job.idempotency_claim``) or raise :class:`IdempotentReplay` with the earlier job; 422 when
    the key was used with another request, 409 when the earlier submit is still being stored."""
    key = requested_key(request)
    if key is None:
        return
    claim = claim_digest(job.owner, key, secret)
    mine = fingerprint(job.request_type, request)
    held, same = await store.claim_idempotency_key(claim, mine, job.id, CLAIM_WINDOW)
    if held is None:
        job.idempotency_claim = claim
        return
    if not same:
        raise AsyncJobError(
            422,
            "this Idempotency-Key was already used with a different request",
            code="idempotency_key_reused",
            param="Idempotency-Key",
        )
    earlier = await store.get(held)
    if earlier is None:  # claimed, but its job is not stored yet (or its submit failed)
        raise AsyncJobError(
            409,
            "a request with this Idempotency-Key is still being accepted; retry",
            type="conflict_error",
            code="idempotency_key_in_use",
            headers={"Retry-After": "1"},
        )
    raise IdempotentReplay(earlier)
