"""Webhooks as Bifrost has them: a signed POST to a named endpoint when a job ends.

A submit that carries ``x-bf-async-webhook: <name>`` names one of the endpoints known to
:class:`WebhooksPlugin`; an unknown or disabled name fails the submit with 400. When the job
completes or fails, the plugin POSTs an event (``async_job.completed`` / ``async_job.failed``,
in the body's ``event`` and the ``X-Bifrost-Event`` header; body in
:mod:`bifrost_async.builtin.webhooks.payload`) to that endpoint's URL, signed the Standard Webhooks
way (``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">``), with Bifrost's retry rule (see
:mod:`bifrost_async.builtin.webhooks.delivery`). Only configured URLs are ever called: the submitter
picks a name, never a URL.

Lifecycle: the aiohttp session is opened by the ``async_jobs_startup`` hook and closed by
``async_jobs_shutdown``, after pending deliveries had ``shutdown_grace`` seconds to finish.

Where pending deliveries live: with a job store that has the
:class:`~bifrost_async.core.webhook_outbox.WebhookOutbox` capability (Redis), in the store's
durable outbox, delivered by every process sharing it (:mod:`bifrost_async.builtin.webhooks.outbox`):
a process that dies loses none. With any other store (memory), in this process's memory, lost
if it dies.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import structlog

# re-exported: the public names of this module before the split
from bifrost_async.builtin.webhooks.config import SECRET_PREFIX as SECRET_PREFIX
from bifrost_async.builtin.webhooks.config import WebhookEndpoint as WebhookEndpoint
from bifrost_async.builtin.webhooks.config import decode_secret as decode_secret
from bifrost_async.builtin.webhooks.config import load_endpoints as load_endpoints
from bifrost_async.builtin.webhooks.config import verify as verify
from bifrost_async.builtin.webhooks.delivery import (
    Attempt,
    AttemptResult,
    DeliveryPolicy,
    DeliveryReport,
    Dispatcher,
    Message,
)
from bifrost_async.builtin.webhooks.endpoints import Endpoint, Sealer
from bifrost_async.builtin.webhooks.outbox import OutboxDeliverer, encode
from bifrost_async.builtin.webhooks.payload import attempt_for, render
from bifrost_async.core.capture import header_value
from bifrost_async.core.errors import AsyncJobError
from bifrost_async.core.hookspecs import hookimpl
from bifrost_async.core.jobs import Job, JobStatus, rfc3339
from bifrost_async.core.webhook_outbox import WebhookOutbox, webhook_outbox
from bifrost_async.core.webhook_records import MemoryWebhookRecords, WebhookRecords, webhook_records

log = structlog.get_logger(__name__)

#: The submit header that names the webhook to call.
WEBHOOK_HEADER = b"x-bf-async-webhook"
#: The ``Job.metadata`` key holding the webhook's name.
METADATA_KEY = "webhook"
#: The ``Job.metadata`` key holding the endpoint's id (its name may change later).
ID_KEY = "webhook_id"


def event_type(job: Job) -> str:
    """``async_job.completed`` or ``async_job.failed``."""
    return "async_job.completed" if job.status is JobStatus.COMPLETED else "async_job.failed"


class WebhooksPlugin:
    """The webhook plugin: ``AsyncJobsMiddleware(app, plugins=[WebhooksPlugin({...})])``.

    ``endpoints`` (names to :class:`WebhookEndpoint`) seed the endpoint set at start (a name
    already in the set is left as the management API last left it). ``admin_token`` turns on the
    management API ``/api/webhooks`` (:mod:`bifrost_async.http.webhook_admin`) and keeps the set and the
    delivery history in the job store when it has the :class:`WebhookRecords` capability, so every
    instance sharing the store sees them (other instances pick up changes within
    ``refresh_seconds``). ``public_url`` makes ``result_url`` absolute. ``policy`` bounds
    concurrency; ``on_delivery`` gets a :class:`DeliveryReport` per event (metrics).

    When the job store has the :class:`WebhookOutbox` capability, pending deliveries are kept in
    it and every process delivers them (``outbox_poll_seconds``: the longest a due retry waits to
    be noticed); give every process the same endpoints (the same webhooks file, or an admin token
    so they share the managed set).
    """

    def __init__(
        self,
        endpoints: Mapping[str, WebhookEndpoint] | None = None,
        *,
        admin_token: str | None = None,
        public_url: str | None = None,
        policy: DeliveryPolicy | None = None,
        on_delivery: Callable[[DeliveryReport], None] | None = None,
        refresh_seconds: float = 2.0,
        outbox_poll_seconds: float = 1.0,
    ) -> None:
        if admin_token is not None and len(admin_token) < 16:
            raise ValueError("the admin token must be at least 16 characters")
        if not 0.05 <= refresh_seconds <= 3600:
            raise ValueError("refresh_seconds must be from 0.05 to 3600")
        if not 0.01 <= outbox_poll_seconds <= 60:
            raise ValueError("outbox_poll_seconds must be from 0.01 to 60")
        self.outbox_poll_seconds = outbox_poll_seconds
        #: The store's durable outbox, once started on a store that has one (else ``None``).
        self.outbox: WebhookOutbox | None = None
        self.deliverer: OutboxDeliverer | None = None
        self.seed = {name: endpoint.to_endpoint(name) for name, endpoint in (endpoints or {}).items()}
        self.admin_token = admin_token
        self.public_url = public_url.rstrip("/") if public_url else ""
        self.refresh_seconds = refresh_seconds
        # without an admin token nothing is shared, so a per-process key is enough
        self.sealer = Sealer(admin_token or secrets.token_urlsafe(32))
        self.records: WebhookRecords = MemoryWebhookRecords()
        self.dispatcher = Dispatcher(
            policy or DeliveryPolicy(), prepare=self.prepare, record=self.record, on_delivery=on_delivery
        )
        self.endpoints: dict[str, Endpoint] = dict(self.seed)  # by name; the submit hook's view
        self._jobs: Any = None
        self._poll_paths: dict[str, str] = {}
        self._refresher: asyncio.Task[None] | None = None
        #: Set after each re-read of the endpoint set (tests wait on it instead of sleeping).
        self.refreshed = asyncio.Event()

    # -- the endpoint set ----------------------------------------------------------------------

    async def load(self, endpoint_id: str) -> Endpoint | None:
        """The endpoint as stored now (``None``: unknown, or sealed under another admin token)."""
        document = await self.records.webhook_get(endpoint_id)
        if document is None:
            return None
        try:
            return self.sealer.load(document)
        except ValueError:
            log.error("webhook.unreadable_endpoint", endpoint_id=endpoint_id)
            return None

    async def refresh(self) -> None:
        """Re-read the endpoint set for the submit hook (after changes made by other instances)."""
        fresh: dict[str, Endpoint] = {}
        for document in await self.records.webhook_all():
            try:
                endpoint = self.sealer.load(document)
            except ValueError:
                continue
            fresh[endpoint.name] = endpoint
        self.endpoints = fresh
        self.refreshed.set()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.refresh()
            except Exception as exc:  # the store may be down for a while: keep the last view
                log.warning("webhook.refresh_failed", error=type(exc).__name__)

    # -- hooks ---------------------------------------------------------------------------------

    @hookimpl
    def validate_submit(self, headers: list[tuple[bytes, bytes]], request_type: str) -> dict[str, str] | None:
        raw = header_value(headers, WEBHOOK_HEADER)
        if raw is None:
            return None
        name = raw.decode("latin-1").strip()
        endpoint = self.endpoints.get(name)
        if endpoint is None or endpoint.disabled:
            shown = name if len(name) <= 100 else name[:100] + "..."
            why = "unknown" if endpoint is None else "disabled"
            raise AsyncJobError(
                400, f"{why} webhook {shown!r}", code=f"{why}_webhook", param="x-bf-async-webhook"
            )
        return {METADATA_KEY: name, ID_KEY: endpoint.id}

    @hookimpl
    async def async_jobs_startup(self, middleware: Any) -> None:
        routes = middleware.routes
        self._poll_paths = {spec.request_type: f"{routes.prefix}/{spec.path}" for spec in routes}
        self._jobs = middleware.store
        shared = webhook_records(middleware.store)
        if self.admin_token is not None and shared is not None:
            self.records = shared
        elif self.admin_token is not None:
            log.warning("webhook.records_not_shared", store=type(middleware.store).__name__)
        for endpoint in self.seed.values():
            await self.records.webhook_create(endpoint.id, endpoint.name, self.sealer.dump(endpoint))
        await self.refresh()
        await self.dispatcher.start()
        outbox = webhook_outbox(middleware.store)
        if outbox is not None:
            self.outbox = outbox
            outbox.outbox_attach(self.outbox_document)
            self.deliverer = OutboxDeliverer(outbox, self.dispatcher, poll_seconds=self.outbox_poll_seconds)
            await self.deliverer.start()
        if self.records is shared and not isinstance(shared, MemoryWebhookRecords):  # others may change it
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    @hookimpl
    async def async_jobs_shutdown(self, middleware: Any) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        if self.deliverer is not None:
            await self.deliverer.stop(self.dispatcher.policy.shutdown_grace)
        await self.dispatcher.stop()

    def message_for(self, job: Job) -> Message | None:
        """The event to deliver for a job that ended, or ``None`` (no webhook named, or its
        endpoint is gone, disabled or not subscribed to the event)."""
        name = job.metadata.get(METADATA_KEY)
        if name is None:
            return None
        event = event_type(job)
        by_id = job.metadata.get(ID_KEY)  # the id survives a rename made while the job ran
        endpoint = next((e for e in self.endpoints.values() if e.id == by_id), None) or self.endpoints.get(
            name
        )
        if endpoint is None or endpoint.disabled or event not in endpoint.events:
            return None
        # one webhook-id per job on every attempt and every process: receivers dedupe on it
        return Message(endpoint.id, endpoint.name, f"msg_{job.id}", event, job.id)

    def outbox_document(self, job: Job) -> str | None:
        """What the store's outbox gets with ``job``'s terminal write (its first attempt)."""
        message = self.message_for(job)
        return None if message is None else encode(message, 1)

    @hookimpl
    def job_finished(self, job: Job) -> None:
        if job.metadata.get(METADATA_KEY) is None:
            return
        message = self.message_for(job)
        if message is None:
            name = job.metadata.get(METADATA_KEY)
            log.info("webhook.skipped", job_id=job.id, webhook=name, reason="gone, disabled or unsubscribed")
            return
        if self.outbox is None:
            self.dispatcher.submit(message)
        # else: the store put it in the outbox with the job's terminal write

    async def deliver(self, message: Message) -> None:
        """Deliver ``message`` again from its first attempt (a redelivery): through the outbox
        when there is one, else in this process."""
        if self.outbox is not None:
            await self.outbox.outbox_add(encode(message, 1))
        else:
            self.dispatcher.submit(message)

    def openapi_submit_parameters(self) -> list[dict[str, Any]]:
        """The submit header this plugin adds, for the OpenAPI document (enabled names only)."""
        names = sorted(name for name, endpoint in self.endpoints.items() if not endpoint.disabled)
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

    def openapi_paths(self) -> dict[str, Any]:
        """The management API's paths, for the OpenAPI document (only when it is on)."""
        from bifrost_async.builtin.webhooks.openapi import admin_paths

        return admin_paths() if self.admin_token is not None else {}

    # -- attempts ------------------------------------------------------------------------------

    async def prepare(self, message: Message) -> Attempt | str:
        """Build one attempt from the endpoint and the job as they are now (Bifrost re-reads both
        per attempt: a rotated secret signs at once, an expired result is said to be expired)."""
        endpoint = await self.load(message.endpoint_id)
        if endpoint is None and isinstance(self.records, MemoryWebhookRecords):
            # not shared: another process's seed gave the same endpoint another id; its name holds
            endpoint = self.endpoints.get(message.webhook)
        if endpoint is None or endpoint.disabled:
            return "webhook endpoint deleted or disabled"
        job = await self._jobs.get(message.job_id) if self._jobs is not None else None
        body = render(self, endpoint, message, job)
        return attempt_for(endpoint, body)

    async def record(self, message: Message, result: AttemptResult) -> None:
        """Append the attempt to the history and count it on the endpoint."""
        document: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "webhook_id": message.msg_id,
            "endpoint_id": message.endpoint_id,
            "async_job_id": message.job_id,
            "event": message.event,
            "attempt_no": result.attempt_no,
            "outcome": result.outcome,
            "status_code": result.status_code,
            "error": result.error,
            "duration_ms": result.duration_ms,
            "created_at": rfc3339(time.time()),
        }
        if result.attempt is not None and result.attempt.record_body:
            document["request_body"] = result.attempt.body.decode("utf-8", "replace")
        await self.records.webhook_add_delivery(message.endpoint_id, document["id"], json.dumps(document))
        if result.attempt is not None:  # no receiver was tried: the counters do not move
            await self.records.webhook_count(
                message.endpoint_id, result.outcome == "delivered", result.status_code
            )

    def poll_path(self, request_type: str, job_id: str) -> str:
        """Where the job's result is polled, absolute when ``public_url`` is set."""
        return f"{self.public_url}{self._poll_paths.get(request_type, '')}/{job_id}"
