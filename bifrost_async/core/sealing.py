"""Sealing what must not rest in clear in shared storage: AES-256-GCM with operator keys.

A distributed queue stores the request a job replays where every instance can read it; the
headers a replay needs carry credentials (``Authorization``, API keys, virtual keys). They are
*sealed* first with a :class:`Keyring` built from ``BIFROST_ASYNC_ENCRYPTION_KEY``:

- a key is 32 random bytes written in URL-safe base64 (``bifrost-async keygen`` prints one);
- the variable holds one key, or several separated by commas for rotation: the **first** seals,
  **every** key opens. To rotate, put the new key first and keep the old one after it until
  every value sealed with it has expired (jobs' TTL), then drop it;
- a sealed value is ``version (1 byte) | key id (4 bytes) | nonce (12 bytes) | ciphertext+tag``.
  The key id is the start of the key's SHA-256, so the key that opens a value is found at once
  and no key needs a name. ``context`` (the job id, say) is authenticated with the value: a
  value moved to another job does not open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: The environment variable the keys come from.
ENV_VAR = "BIFROST_ASYNC_ENCRYPTION_KEY"

_VERSION = b"\x01"
_KEY_ID_BYTES = 4
_NONCE_BYTES = 12
_HEADER_BYTES = 1 + _KEY_ID_BYTES + _NONCE_BYTES
_TAG_BYTES = 16


class SealError(Exception):
    """A sealed value does not open: not sealed by us, tampered with, sealed for another
    ``context``, or sealed with a key no longer in the keyring."""


def generate_key() -> str:
    """A fresh random key in the form ``BIFROST_ASYNC_ENCRYPTION_KEY`` takes."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")


def _decode_key(text: str, position: int) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError(
            f"{ENV_VAR}: key {position} is not 32 bytes in URL-safe base64; "
            "make one with `bifrost-async keygen`"
        )
    return raw


class Keyring:
    """The operator's encryption keys: the first seals, all of them open."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError(f"{ENV_VAR}: no key given; make one with `bifrost-async keygen`")
        if any(len(key) != 32 for key in keys):
            raise ValueError(f"{ENV_VAR}: every key must be 32 bytes")
        self._sealer = AESGCM(keys[0])
        self._sealer_id = self._key_id(keys[0])
        self._openers: dict[bytes, AESGCM] = {}
        for key in keys:
            self._openers.setdefault(self._key_id(key), AESGCM(key))

    @staticmethod
    def _key_id(key: bytes) -> bytes:
        return hashlib.sha256(key).digest()[:_KEY_ID_BYTES]

    @classmethod
    def parse(cls, value: str) -> Keyring:
        """Keys from the variable's text: URL-safe base64 keys separated by commas (spaces around
        them are ignored). A bad value raises :class:`ValueError` with a one-line message that
        never repeats the value."""
        parts = [part.strip() for part in value.split(",")]
        if not any(parts):
            raise ValueError(f"{ENV_VAR} is empty; make a key with `bifrost-async keygen`")
        if not all(parts):
            raise ValueError(f"{ENV_VAR}: an empty key between commas")
        return cls([_decode_key(part, n) for n, part in enumerate(parts, start=1)])

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Keyring | None:
        """The keyring ``BIFROST_ASYNC_ENCRYPTION_KEY`` names, or ``None`` when it is unset or
        blank. A malformed value raises :class:`ValueError`."""
        value = (os.environ if environ is None else environ).get(ENV_VAR, "")
        return cls.parse(value) if value.strip() else None

    @property
    def key_count(self) -> int:
        """How many distinct keys open values."""
        return len(self._openers)

    def seal(self, plaintext: bytes, *, context: bytes) -> bytes:
        """``plaintext`` encrypted and authenticated with the first key; ``context`` is bound to
        it (it must be given again to open it) but not stored."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return _VERSION + self._sealer_id + nonce + self._sealer.encrypt(nonce, plaintext, context)

    def open(self, sealed: bytes, *, context: bytes) -> bytes:
        """The plaintext of a value :meth:`seal` made with any key of this keyring and the same
        ``context``; :class:`SealError` otherwise."""
        if len(sealed) < _HEADER_BYTES + _TAG_BYTES or sealed[:1] != _VERSION:
            raise SealError("not a sealed value")
        opener = self._openers.get(sealed[1 : 1 + _KEY_ID_BYTES])
        if opener is None:
            raise SealError(f"sealed with a key that is not in {ENV_VAR}")
        nonce = sealed[1 + _KEY_ID_BYTES : _HEADER_BYTES]
        try:
            return opener.decrypt(nonce, sealed[_HEADER_BYTES:], context)
        except InvalidTag:
            raise SealError("the sealed value does not authenticate (tampered, or another context)") from None

    def __repr__(self) -> str:  # never show key material
        return f"<Keyring keys={self.key_count}>"
