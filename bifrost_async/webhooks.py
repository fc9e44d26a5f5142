"""Webhooks, Bifrost-compatible: a signed POST to a named endpoint when a job ends.

A submit that carries ``x-bf-async-webhook: <name>`` names one of the endpoints configured on
:class:`WebhooksPlugin`; an unknown or disabled name fails the submit with 400. When the job
completes or fails, the plugin POSTs a thin JSON event to that endpoint's URL, signed the
Standard Webhooks way (``webhook-id``, ``webhook-timestamp``, ``webhook-signature:
v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``), with retries (see
:mod:`bifrost_async.webhook_delivery`). Only configured URLs are ever called: the submitter
picks a name, never a URL.

Lifecycle: the aiohttp session is opened by the ``async_jobs_startup`` hook and closed by
``async_jobs_shutdown``, after pending deliveries had ``shutdown_grace`` seconds to finish.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hmac
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from .capture import header_value
from .errors import AsyncJobError
from .hookspecs import hookimpl
from .http import encode_json
from .jobs import Job, JobStatus, rfc3339
from .webhook_delivery import DeliveryPolicy, DeliveryReport, Dispatcher, Message, sign

log = structlog.get_logger(__name__)

#: The submit header that names the webhook to call.
WEBHOOK_HEADER = b"x-bf-async-webhook"
#: The ``Job.metadata`` key holding the webhook's name.
METADATA_KEY = "webhook"
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
        msg_id, stamp = headers["webhook-id"], int(headers["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - stamp) > tolerance:
        return False
    expected = sign(decode_secret(secret), msg_id, stamp, body)
    candidates = headers.get("webhook-signature", "").split()
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


@dataclasses.dataclass(frozen=True)
class WebhookEndpoint:
    """One named endpoint: where to POST, the signing secret (``whsec_<base64>``), on or off.

    The secret is a credential: it is left out of ``repr`` and never logged."""

    url: str
    secret: str = dataclasses.field(repr=False)
    enabled: bool = True

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must be http(s): {self.url!r}")
        decode_secret(self.secret)  # fail at configuration time, not at the first delivery

    @property
    def key(self) -> bytes:
        """The decoded HMAC key."""
        return decode_secret(self.secret)


def load_endpoints(path: str | Path) -> dict[str, WebhookEndpoint]:
    """Endpoints from a JSON file ``{"name": {"url": ..., "secret": ..., "enabled": true}}``
    (for the command line; keep the file readable by the service only: it holds secrets)."""
    data = json.loads(Path(path).read_text())
    return {name: WebhookEndpoint(**fields) for name, fields in data.items()}


def event_type(job: Job) -> str:
    """``async_job.completed`` or ``async_job.failed``."""
    return "async_job.completed" if job.status is JobStatus.COMPLETED else "async_job.failed"


class WebhooksPlugin:
    """The webhook plugin: pass it as ``AsyncJobsMiddleware(app, plugins=[WebhooksPlugin({...})])``.

    ``endpoints`` maps names to :class:`WebhookEndpoint`. ``public_url`` (e.g.
    ``https://api.example.com``) makes ``result_url`` absolute; without it the event carries the
    poll path. ``inline_max_bytes`` caps the event size up to which ``result``/``error`` are
    included inline. ``policy`` sets retries, timeouts and concurrency. ``on_delivery`` is called
    with a :class:`DeliveryReport` once per event when it was delivered or given up (metrics).
    One instance serves one middleware.
    """

    def __init__(
        self,
        endpoints: Mapping[str, WebhookEndpoint],
        *,
        public_url: str | None = None,
        inline_max_bytes: int = 64 * 1024,
        policy: DeliveryPolicy | None = None,
        on_delivery: Callable[[DeliveryReport], None] | None = None,
    ) -> None:
        self.endpoints = dict(endpoints)
        self.public_url = public_url.rstrip("/") if public_url else ""
        self.inline_max_bytes = inline_max_bytes
        self.dispatcher = Dispatcher(policy or DeliveryPolicy(), on_delivery=on_delivery)
        self._poll_paths: dict[str, str] = {}

    # -- hooks ---------------------------------------------------------------------------------

    @hookimpl
    def validate_submit(self, headers: list[tuple[bytes, bytes]], request_type: str) -> dict[str, str] | None:
        raw = header_value(headers, WEBHOOK_HEADER)
        if raw is None:
            return None
        name = raw.decode("latin-1").strip()
        endpoint = self.endpoints.get(name)
        if endpoint is None or not endpoint.enabled:
            shown = name if len(name) <= 100 else name[:100] + "..."
            why = "unknown" if endpoint is None else "disabled"
            raise AsyncJobError(
                400, f"{why} webhook {shown!r}", code=f"{why}_webhook", param="x-bf-async-webhook"
            )
        return {METADATA_KEY: name}

    @hookimpl
    async def async_jobs_startup(self, middleware: Any) -> None:
        routes = middleware.routes
        self._poll_paths = {spec.request_type: f"{routes.prefix}/{spec.path}" for spec in routes}
        await self.dispatcher.start()

    @hookimpl
    async def async_jobs_shutdown(self, middleware: Any) -> None:
        await self.dispatcher.stop()

    @hookimpl
    def job_finished(self, job: Job) -> None:
        name = job.metadata.get(METADATA_KEY)
        if name is None:
            return
        endpoint = self.endpoints.get(name)
        if endpoint is None or not endpoint.enabled:
            log.warning("webhook.skipped", job_id=job.id, webhook=name, reason="unknown or disabled")
            return
        message = Message(
            webhook=name,
            url=endpoint.url,
            key=endpoint.key,
            msg_id=f"msg_{job.id}",  # the same id on every attempt and every process: receivers dedupe on it
            event=event_type(job),
            job_id=job.id,
            body=self.payload(job),
        )
        self.dispatcher.submit(message)

    def openapi_submit_parameters(self) -> list[dict[str, Any]]:
        """The submit header this plugin adds, for the OpenAPI document (enabled names only)."""
        names = sorted(name for name, endpoint in self.endpoints.items() if endpoint.enabled)
        if not names:
            return []
        return [
            {
                "name": "x-bf-async-webhook",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "enum": names},
                "description": "name of a configured webhook to call when the job ends",
                "x-extension": True,
            }
        ]

    # -- payload -------------------------------------------------------------------------------

    def payload(self, job: Job) -> bytes:
        """The event body: thin, with ``result``/``error`` inline only under the size cap."""
        poll = f"{self._poll_paths.get(job.request_type, '')}/{job.id}"
        data: dict[str, Any] = {
            "job_id": job.id,
            "request_id": job.request_id,
            "request_type": job.request_type,
            "status": job.status.value,
            "status_code": job.status_code,
            "created_at": rfc3339(job.created_at),
            "result_url": self.public_url + poll,
        }
        if job.completed_at is not None:
            data["completed_at"] = rfc3339(job.completed_at)
        if job.expires_at is not None:
            data["expires_at"] = rfc3339(job.expires_at)
        envelope = {
            "type": event_type(job),
            "timestamp": rfc3339(job.completed_at or time.time()),
            "data": data,
        }
        thin = encode_json(envelope)
        inline = "result" if job.status is JobStatus.COMPLETED else "error"
        value = job.result if inline == "result" else job.error
        if value is None:
            return thin
        full = encode_json({**envelope, "data": {**data, inline: value}})
        return full if len(full) <= self.inline_max_bytes else thin
