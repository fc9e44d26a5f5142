"""Configured webhook endpoints (the webhooks file and the plugin's constructor), Standard
Webhooks secrets, and the receiver-side signature check."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hmac
import json
import time
from collections.abc import Mapping
from pathlib import Path

from bifrost_async.builtin.webhooks.delivery import sign
from bifrost_async.builtin.webhooks.endpoints import EVENTS, Endpoint, endpoint_from_request
from bifrost_async.core.errors import AsyncJobError
from bifrost_async.core.numbers import ascii_int

SECRET_PREFIX = "whsec_"


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret ``whsec_<base64>`` (the prefix is optional).

    Raises ``ValueError`` without quoting the secret."""
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret must be 'whsec_' followed by base64") from None
    if len(key) < 16:
        raise ValueError("a webhook secret must decode to at least 16 bytes")
    return key


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, tolerance: float = 300) -> bool:
    """True if ``body`` with these ``webhook-*`` headers was signed with ``secret`` within
    ``tolerance`` seconds of now: what a receiver runs (any of several signatures may match)."""
    try:
        msg_id, stamp = headers["webhook-id"], ascii_int(headers["webhook-timestamp"])
    except KeyError:
        return False
    if stamp is None:  # int() would also take " 1", "+1", "1_0" and other scripts' digits
        return False
    if abs(time.time() - stamp) > tolerance:
        return False
    expected = sign(decode_secret(secret), msg_id, stamp, body)
    candidates = headers.get("webhook-signature", "").split()
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


@dataclasses.dataclass(frozen=True)
class WebhookEndpoint:
    """One endpoint of the webhooks file / constructor: URL, signing secret (``whsec_<base64>``),
    on or off, and Bifrost's per-endpoint settings (see :class:`~.webhook_endpoints.Endpoint`).

    The secret and the custom header values are credentials: left out of ``repr``, never logged."""

    url: str
    secret: str = dataclasses.field(repr=False)
    enabled: bool = True
    events: tuple[str, ...] = EVENTS
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    include_response: bool = False
    allow_private_network: bool = False
    record_request_body: bool = False
    max_retries: int = 0
    retry_backoff_initial_seconds: int = 0
    retry_backoff_max_seconds: int = 0
    attempt_timeout_seconds: int = 0
    max_response_payload_kbs: int = 0

    def __post_init__(self) -> None:
        decode_secret(self.secret)  # fail at configuration time, not at the first delivery
        self.to_endpoint("check")

    def to_endpoint(self, name: str) -> Endpoint:
        """The managed form; ``ValueError`` naming the field if a setting is invalid."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del fields["secret"], fields["enabled"]
        fields.update(
            name=name, events=list(self.events), headers=dict(self.headers), disabled=not self.enabled
        )
        try:
            return endpoint_from_request(fields, secret=self.secret)
        except AsyncJobError as exc:
            raise ValueError(f"{exc.body()['error'].get('param')}: {exc.message}") from None

    @property
    def key(self) -> bytes:
        """The decoded HMAC key."""
        return decode_secret(self.secret)


def load_endpoints(path: str | Path) -> dict[str, WebhookEndpoint]:
    """Endpoints from a JSON file ``{"name": {"url": ..., "secret": ..., "enabled": true, ...}}``
    (for the command line; keep the file readable by the service only: it holds secrets)."""
    data = json.loads(Path(path).read_text())
    return {name: WebhookEndpoint(**fields) for name, fields in data.items()}
