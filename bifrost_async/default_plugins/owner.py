"""The default owner rule: a digest of the first credential header present."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from bifrost_async.hookspecs import hookimpl

#: Credential headers, in the order the contract checks them.
CREDENTIAL_HEADERS = (b"x-bf-vk", b"authorization", b"x-api-key", b"x-goog-api-key")


def credential_digest(credential: bytes, secret: str | None) -> str:
    """A one-way digest of a credential: HMAC-SHA256 with ``secret`` if set, else SHA-256."""
    if secret:
        return hmac.new(secret.encode(), credential, hashlib.sha256).hexdigest()
    return hashlib.sha256(b"bifrost-async-owner\0" + credential).hexdigest()


@hookimpl(trylast=True)
def job_owner(headers: list[tuple[bytes, bytes]], scope: dict[str, Any], secret: str | None) -> str:
    """Digest ``x-bf-vk``, ``Authorization``, ``x-api-key`` or ``x-goog-api-key`` (the first
    present and non-empty, with the header name so equal values under different names differ);
    ``""`` (public) when none is sent."""
    values = {}
    for name, value in headers:
        if name in CREDENTIAL_HEADERS and name not in values and value.strip():
            values[name] = value.strip()
    for name in CREDENTIAL_HEADERS:
        if name in values:
            return credential_digest(name + b":" + values[name], secret)
    return ""
