"""Credentials on a request: which one decides the owner, Bifrost virtual keys, and the
operator's list of accepted keys (kept only as digests).

A Bifrost virtual key is a value starting ``sk-bf-``. It is the same key whichever of the four
credential headers carries it (``x-bf-vk: sk-bf-X``, ``Authorization: Bearer sk-bf-X``,
``x-api-key: sk-bf-X``, ``x-goog-api-key: sk-bf-X``); any other credential is identified by its
header name and value together, as before.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from pathlib import Path

#: Credential headers, in the order the contract checks them.
CREDENTIAL_HEADERS = (b"x-bf-vk", b"authorization", b"x-api-key", b"x-goog-api-key")
#: What every Bifrost virtual key starts with.
VIRTUAL_KEY_PREFIX = b"sk-bf-"
_BEARER = b"bearer "


def credential_digest(credential: bytes, secret: str | None) -> str:
    """A one-way digest of a credential: HMAC-SHA256 with ``secret`` if set, else SHA-256."""
    if secret:
        return hmac.new(secret.encode(), credential, hashlib.sha256).hexdigest()
    return hashlib.sha256(b"bifrost-async-owner\0" + credential).hexdigest()


def presented_credential(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bytes, bytes] | None:
    """``(header name, value)`` of the credential that identifies the caller: the first of
    :data:`CREDENTIAL_HEADERS` present and non-empty (the first occurrence of each header), or
    ``None`` when the request carries none."""
    values: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in CREDENTIAL_HEADERS and name not in values and value.strip():
            values[name] = value.strip()
    for name in CREDENTIAL_HEADERS:
        if name in values:
            return name, values[name]
    return None


def virtual_key(name: bytes, value: bytes) -> bytes | None:
    """The virtual key in a credential header, without ``Bearer``; ``None`` if it is not one."""
    if name == b"authorization" and value[:7].lower() == _BEARER:
        value = value[7:].strip()
    return value if value.startswith(VIRTUAL_KEY_PREFIX) else None


def identity(name: bytes, value: bytes) -> bytes:
    """What is digested for a credential: ``vk:<key>`` for a virtual key (one owner across
    headers), else ``<header>:<value>`` (equal values under different headers differ)."""
    key = virtual_key(name, value)
    return b"vk:" + key if key is not None else name + b":" + value


def _bare(name: bytes, value: bytes) -> bytes:
    """The key itself as an operator writes it in the accepted list: no ``Bearer``."""
    if name == b"authorization" and value[:7].lower() == _BEARER:
        return value[7:].strip()
    return value


class AcceptedKeys:
    """The operator's accepted API keys and virtual keys, held only as digests.

    Build it with :meth:`from_keys` (or :meth:`from_file`); the keys themselves are not kept.
    :meth:`check` compares a presented key against every digest with
    :func:`hmac.compare_digest` and no early exit, so its time does not depend on which key (if
    any) matched.
    """

    def __init__(self, virtual: frozenset[str], other: frozenset[str], secret: str | None) -> None:
        self._virtual = tuple(sorted(virtual))
        self._other = tuple(sorted(other))
        self._secret = secret

    @classmethod
    def from_keys(cls, keys: Iterable[str], secret: str | None = None) -> AcceptedKeys:
        """Digest ``keys`` (``sk-bf-...`` are virtual keys; blanks are skipped) with ``secret``
        (the ``owner_secret``; HMAC-SHA256 when set)."""
        virtual: set[str] = set()
        other: set[str] = set()
        for raw in keys:
            key = raw.strip().encode("utf-8")
            if not key:
                continue
            digest = credential_digest(b"key:" + key, secret)
            (virtual if key.startswith(VIRTUAL_KEY_PREFIX) else other).add(digest)
        if not virtual and not other:
            raise ValueError("the list of accepted keys is empty")
        return cls(frozenset(virtual), frozenset(other), secret)

    @classmethod
    def from_file(cls, path: str, secret: str | None = None) -> AcceptedKeys:
        """Keys from a text file (see :meth:`read_file`)."""
        return cls.from_keys(cls.read_file(path), secret)

    @staticmethod
    def read_file(path: str) -> list[str]:
        """The keys in a text file, one a line; blank lines and ``#`` comment lines skipped."""
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]

    @property
    def has_virtual_keys(self) -> bool:
        """True if any virtual key is configured (unknown virtual keys are then refused)."""
        return bool(self._virtual)

    @property
    def has_api_keys(self) -> bool:
        """True if any other API key is configured (unknown or missing credentials are then
        refused)."""
        return bool(self._other)

    def check(self, name: bytes, value: bytes) -> bool:
        """True if the credential in header ``name`` is one of the accepted keys."""
        key = _bare(name, value)
        digest = credential_digest(b"key:" + key, self._secret)
        pool = self._virtual if key.startswith(VIRTUAL_KEY_PREFIX) else self._other
        found = False
        for known in pool:  # no early exit: the time is the same for every key in the pool
            found |= hmac.compare_digest(known, digest)
        return found

    def __repr__(self) -> str:  # never show digests either: they would help an offline guess
        return f"AcceptedKeys(virtual={len(self._virtual)}, other={len(self._other)})"
