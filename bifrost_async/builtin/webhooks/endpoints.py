"""Webhook endpoint settings as Bifrost has them: fields, defaults, validation, the SSRF rule,
and their stored form (signing secret and custom header values encrypted at rest)."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import json
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bifrost_async.core.errors import AsyncJobError

EVENTS = ("async_job.completed", "async_job.failed")
#: Delivery headers an endpoint's custom ``headers`` may never set (Bifrost's list).
PROTECTED_HEADERS = frozenset(
    {
        "webhook-id", "webhook-timestamp", "webhook-signature", "x-bifrost-event", "content-type",
        "content-length", "user-agent", "host", "connection", "transfer-encoding",
    }
)  # fmt: skip
#: What listings show instead of a custom header's value.
REDACTED = "<redacted>"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Tuning knobs: 0 (or absent) means Bifrost's default; each has an upper bound.
TUNING: dict[str, tuple[int, int]] = {  # name -> (default, largest accepted)
    "max_retries": (4, 20),
    "retry_backoff_initial_seconds": (30, 86_400),
    "retry_backoff_max_seconds": (1800, 86_400),
    "attempt_timeout_seconds": (10, 300),
    "max_response_payload_kbs": (256, 10_240),
}
MAX_NAME = 255
MAX_URL = 2048
MAX_HEADERS = 32


def invalid(field: str, message: str) -> AsyncJobError:
    """A 400 in the contract's error shape naming the offending field."""
    return AsyncJobError(400, message, code="invalid_webhook", param=field)


def new_secret() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _unwrapped(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(address)
    # ::ffff:169.254.169.254 reaches the IPv4 address: judge that one
    return ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip


def private_address(address: str) -> bool:
    """True for loopback, private, link-local, reserved, multicast or unspecified addresses."""
    ip = _unwrapped(address)
    return not ip.is_global or ip.is_multicast


def link_local(address: str) -> bool:
    """True for link-local addresses (cloud metadata services): refused even for private
    networks, as Bifrost does."""
    return _unwrapped(address).is_link_local


def check_url(url: Any, allow_private_network: bool) -> str:
    """Bifrost's URL rule: http(s) only, https unless ``allow_private_network``, no credentials or
    fragment, and an IP literal host must be public unless private networks are allowed."""
    if not isinstance(url, str) or not url:
        raise invalid("url", "webhook URL cannot be empty")
    if len(url) > MAX_URL:
        raise invalid("url", f"webhook URL must be at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a bad port
    except ValueError:
        raise invalid("url", "invalid webhook URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid("url", "webhook URL must be an absolute http(s) URL")
    if parts.scheme == "http" and not allow_private_network:
        raise invalid("url", "webhook URL must use https (http requires allow_private_network)")
    if parts.username is not None or parts.password is not None:
        raise invalid("url", "webhook URL must not contain credentials")
    if parts.fragment:
        raise invalid("url", "webhook URL must not contain a fragment")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        literal = None
    if literal is not None and link_local(str(literal)):
        raise invalid("url", "webhook URL must not point at a link-local address")
    if literal is not None and not allow_private_network and private_address(str(literal)):
        raise invalid("url", "webhook URL points at a private network (set allow_private_network)")
    return url


@dataclasses.dataclass
class Endpoint:
    """One managed webhook endpoint (field names as Bifrost's API has them). ``secret`` and the
    values of ``headers`` are credentials: never in ``repr``, listings or logs."""

    name: str
    url: str
    secret: str = dataclasses.field(repr=False)
    id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    events: list[str] = dataclasses.field(default_factory=lambda: list(EVENTS))
    headers: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)
    include_response: bool = False
    allow_private_network: bool = False
    disabled: bool = False
    #: Our extension: keep each attempt's request body in the delivery history (off by default).
    record_request_body: bool = False
    max_retries: int = 0
    retry_backoff_initial_seconds: int = 0
    retry_backoff_max_seconds: int = 0
    attempt_timeout_seconds: int = 0
    max_response_payload_kbs: int = 0
    created_at: float = dataclasses.field(default_factory=time.time)
    updated_at: float = dataclasses.field(default_factory=time.time)

    def tuning(self, name: str) -> int:
        """The effective value of a tuning knob (its default when unset)."""
        value: int = getattr(self, name)
        return value if value > 0 else TUNING[name][0]

    def public(self, counters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The API view: no secret, custom header values redacted, counters merged in."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "secret"}
        data["headers"] = {name: REDACTED for name in self.headers}
        data["created_at"], data["updated_at"] = _stamp(self.created_at), _stamp(self.updated_at)
        counters = dict(counters or {})
        for key in ("last_success_at", "last_failure_at"):
            if key in counters:
                counters[key] = _stamp(float(counters[key]))
        data.update({"successes": 0, "failures": 0, "consecutive_failures": 0, **counters})
        return data


def _stamp(seconds: float) -> str:
    from bifrost_async.core.jobs import rfc3339

    return rfc3339(seconds)


_BOOLS = ("include_response", "allow_private_network", "disabled", "record_request_body")


def endpoint_from_request(
    body: Any, *, endpoint_id: str | None = None, secret: str | None = None, previous: Endpoint | None = None
) -> Endpoint:
    """Validate a create/update body into an :class:`Endpoint` (400 naming the field otherwise).

    An update is a full replacement, as in Bifrost; a header sent back as ``<redacted>`` keeps
    its stored value so an edit round-tripped from a listing cannot wipe it."""
    if not isinstance(body, dict):
        raise invalid("body", "request body must be a JSON object")
    known = {f.name for f in dataclasses.fields(Endpoint)} - {"id", "secret", "created_at", "updated_at"}
    for key in body:
        if key not in known:
            raise invalid(key, f"unknown field {key!r}")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise invalid("name", "webhook endpoint name cannot be empty")
    if len(name) > MAX_NAME or not name.isprintable():
        raise invalid("name", f"webhook endpoint name must be printable, at most {MAX_NAME} characters")
    flags: dict[str, bool] = {}
    for flag in _BOOLS:
        value = body.get(flag, False)
        if not isinstance(value, bool):
            raise invalid(flag, f"{flag} must be true or false")
        flags[flag] = value
    url = check_url(body.get("url"), flags["allow_private_network"])
    events = body.get("events")
    if not isinstance(events, list) or not events:
        raise invalid("events", "webhook endpoint must subscribe to at least one event")
    for event in events:
        if event not in EVENTS:
            raise invalid("events", f"unknown webhook event {str(event)[:100]!r}")
    if len(set(events)) != len(events):
        raise invalid("events", "duplicate webhook event")
    tuning: dict[str, int] = {}
    for knob, (_, largest) in TUNING.items():
        value = body.get(knob, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= largest:
            raise invalid(knob, f"{knob} must be an integer from 0 (the default) to {largest}")
        tuning[knob] = value
    headers = _headers(body.get("headers") or {}, previous)
    now = time.time()
    return Endpoint(
        name=name,
        url=url,
        secret=secret or (previous.secret if previous else new_secret()),
        id=endpoint_id or str(uuid.uuid4()),
        events=list(events),
        headers=headers,
        created_at=previous.created_at if previous else now,
        updated_at=now,
        include_response=flags["include_response"],
        allow_private_network=flags["allow_private_network"],
        disabled=flags["disabled"],
        record_request_body=flags["record_request_body"],
        **tuning,
    )


def _headers(raw: Any, previous: Endpoint | None) -> dict[str, str]:
    if not isinstance(raw, dict) or len(raw) > MAX_HEADERS:
        raise invalid("headers", f"headers must be an object of at most {MAX_HEADERS} names to strings")
    headers: dict[str, str] = {}
    for name, value in raw.items():
        if not _TOKEN.fullmatch(name) or len(name) > 256:
            raise invalid("headers", f"invalid webhook header name {name[:100]!r}")
        if name.lower() in PROTECTED_HEADERS:
            raise invalid("headers", f"webhook header {name!r} is reserved and cannot be overridden")
        if value == REDACTED and previous is not None and name in previous.headers:
            value = previous.headers[name]
        if not isinstance(value, str) or len(value) > 8192 or any(c in value for c in "\r\n\0"):
            raise invalid("headers", f"webhook header {name!r} must be a one-line string")
        headers[name] = value
    return headers


class Sealer:
    """Encrypts endpoint secrets and header values for the store (Fernet, key derived from the
    admin token with HKDF): a store dump alone reveals no credential. Every instance sharing the
    store must run with the same admin token."""

    def __init__(self, admin_token: str) -> None:
        kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"bifrost-async webhook records")
        self._fernet = Fernet(base64.urlsafe_b64encode(kdf.derive(admin_token.encode())))

    def dump(self, endpoint: Endpoint) -> str:
        """The stored JSON document of ``endpoint``."""
        data = dataclasses.asdict(endpoint)
        credentials = json.dumps({"secret": endpoint.secret, "headers": endpoint.headers})
        data["secret"], data["headers"] = None, sorted(endpoint.headers)
        data["sealed"] = self._fernet.encrypt(credentials.encode()).decode()
        return json.dumps(data)

    def load(self, document: str) -> Endpoint:
        """An endpoint from its stored document; ``ValueError`` if sealed with another key."""
        data = json.loads(document)
        try:
            credentials = json.loads(self._fernet.decrypt(data.pop("sealed").encode()))
        except InvalidToken:
            raise ValueError("webhook endpoint sealed with another admin token") from None
        data["secret"], data["headers"] = credentials["secret"], credentials["headers"]
        return Endpoint(**data)
