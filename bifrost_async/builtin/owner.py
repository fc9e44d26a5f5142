"""The default owner rule: a digest of the first credential header present; a Bifrost virtual
key is one owner whichever header carries it."""

from __future__ import annotations

from typing import Any

from bifrost_async.core.hookspecs import hookimpl
from bifrost_async.service.credentials import (
    CREDENTIAL_HEADERS,
    credential_digest,
    identity,
    presented_credential,
)

__all__ = ["CREDENTIAL_HEADERS", "credential_digest", "job_owner"]


@hookimpl(trylast=True)
def job_owner(headers: list[tuple[bytes, bytes]], scope: dict[str, Any], secret: str | None) -> str:
    """Digest ``x-bf-vk``, ``Authorization``, ``x-api-key`` or ``x-goog-api-key`` (the first
    present and non-empty). A virtual key (``sk-bf-...``, ``Bearer`` stripped) is digested alone,
    so the same key under any of the four headers is one owner; any other credential is
    digested with its header name, so equal values under different names differ. ``""``
    (public) when none is sent."""
    credential = presented_credential(headers)
    if credential is None:
        return ""
    return credential_digest(identity(*credential), secret)
