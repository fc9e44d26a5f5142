"""Bifrost's webhook management API, ``/api/webhooks``, for operators.

Routes (as in Bifrost): ``GET/POST /api/webhooks``, ``GET/PUT/DELETE /api/webhooks/{id}``,
``POST /api/webhooks/{id}/rotate-secret``, ``POST /api/webhooks/{id}/test``,
``GET /api/webhooks/{id}/deliveries`` and ``POST /api/webhooks/deliveries/{id}/redeliver``.
Every call needs the admin token, as ``X-Bifrost-Setup-Token: <token>`` (Bifrost's clients) or
``Authorization: Bearer <token>``; without a configured token the API does not exist (404).
The signing secret is shown only in the create and rotate answers.
"""

from __future__ import annotations

import hmac
import json
import uuid
from typing import Any
from urllib.parse import parse_qs

import pluggy

from bifrost_async.builtin.webhooks.delivery import Message
from bifrost_async.builtin.webhooks.endpoints import (
    EVENTS,
    Endpoint,
    endpoint_from_request,
    invalid,
    new_secret,
)
from bifrost_async.builtin.webhooks.payload import attempt_for, sample
from bifrost_async.builtin.webhooks.plugin import WebhooksPlugin
from bifrost_async.core.errors import AsyncJobError
from bifrost_async.core.numbers import ascii_int
from bifrost_async.http.respond import send_json

PREFIX = "/api/webhooks"
MAX_BODY = 64 * 1024
MAX_PAGE = 100
#: Endpoints one store holds: the set is read whole on every refresh and listing.
MAX_ENDPOINTS = 1000


def admin_plugin(pm: pluggy.PluginManager, path: str) -> WebhooksPlugin | None:
    """The webhook plugin that answers ``path``, or ``None`` when it is not an admin path."""
    if path != PREFIX and not path.startswith(PREFIX + "/"):
        return None
    return next((p for p in pm.get_plugins() if isinstance(p, WebhooksPlugin)), None)


def _not_found(what: str) -> AsyncJobError:
    return AsyncJobError(404, f"{what} not found", type="not_found_error", code="not_found")


def _authorize(plugin: WebhooksPlugin, scope: dict[str, Any]) -> None:
    if plugin.admin_token is None:  # the API is off: look like any unknown path
        raise AsyncJobError(404, f"no route at {scope['path']}", type="not_found_error", code="unknown_route")
    headers = {name.lower(): value for name, value in scope["headers"]}
    given = headers.get(b"x-bifrost-setup-token", b"")
    bearer = headers.get(b"authorization", b"")
    if not given and bearer[:7].lower() == b"bearer ":
        given = bearer[7:].strip()
    # constant time, on bytes: the token is never compared char by char nor logged
    if not given or not hmac.compare_digest(given, plugin.admin_token.encode()):
        raise AsyncJobError(
            401, "a valid admin token is required", type="authentication_error", code="invalid_admin_token",
            headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip


async def _body(receive: Any) -> Any:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise AsyncJobError(413, f"request body exceeds {MAX_BODY} bytes", code="body_too_large")
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    raw = b"".join(chunks)
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):  # deep nesting exhausts the parser
        raise invalid("body", "Invalid request payload: not JSON") from None


def _int(query: dict[str, list[str]], name: str, default: int, largest: int) -> int:
    raw = query.get(name, [str(default)])[-1]
    value = ascii_int(raw)  # "²" passes str.isdigit() and then fails int(): a 500
    if value is None or value > largest:
        raise invalid(name, f"Invalid {name} parameter: must be an integer from 0 to {largest}")
    return value


async def handle(plugin: WebhooksPlugin, path: str, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer one management API request (errors raise :class:`AsyncJobError`)."""
    _authorize(plugin, scope)
    parts = [part for part in path[len(PREFIX) :].split("/") if part]
    route: tuple[str, ...]
    if len(parts) == 3 and parts[0] == "deliveries" and parts[2] == "redeliver":
        route, ident = ("deliveries", "{}", "redeliver"), parts[1]
    else:
        route, ident = tuple("{}" if i == 0 else p for i, p in enumerate(parts)), parts[0] if parts else ""
    method = scope["method"]
    api = _Api(plugin)
    table: dict[tuple[str, ...], dict[str, Any]] = {
        (): {"GET": api.list_endpoints, "POST": api.create},
        ("{}",): {"GET": api.get, "PUT": api.update, "DELETE": api.delete},
        ("{}", "rotate-secret"): {"POST": api.rotate},
        ("{}", "test"): {"POST": api.test},
        ("{}", "deliveries"): {"GET": api.deliveries},
        ("deliveries", "{}", "redeliver"): {"POST": api.redeliver},
    }
    methods = table.get(route)
    if methods is None:
        raise AsyncJobError(404, f"no route at {path}", type="not_found_error", code="unknown_route")
    if method not in methods:
        raise AsyncJobError(
            405, f"method {method} is not allowed here", code="method_not_allowed",
            headers={"Allow": ", ".join(methods)},
        )  # fmt: skip
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    body = await _body(receive) if method in ("POST", "PUT") else None
    status, answer = await methods[method](ident=ident, body=body, query=query)
    await send_json(send, status, answer)


class _Api:
    def __init__(self, plugin: WebhooksPlugin) -> None:
        self.plugin = plugin
        self.records = plugin.records

    async def _endpoint(self, ident: str) -> Endpoint:
        endpoint = await self.plugin.load(ident)
        if endpoint is None:
            raise _not_found("Webhook endpoint")
        return endpoint

    async def _view(self, endpoint: Endpoint) -> dict[str, Any]:
        return endpoint.public(await self.records.webhook_counters(endpoint.id))

    async def _saved(self) -> None:
        await self.plugin.refresh()  # this instance's submit hook sees the change at once

    async def list_endpoints(self, *, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        limit, offset = _int(query, "limit", 50, MAX_PAGE), _int(query, "offset", 0, 10**6)
        search = query.get("search", [""])[-1].lower()
        event = query.get("event", [""])[-1]
        if event and event not in EVENTS:
            raise invalid("event", f"unknown webhook event {event[:100]!r}")
        disabled = query.get("disabled", [""])[-1]
        if disabled not in ("", "true", "false"):
            raise invalid("disabled", "disabled must be true or false")
        chosen = []
        for document in await self.records.webhook_all():
            try:
                endpoint = self.plugin.sealer.load(document)
            except ValueError:
                continue
            if search and search not in endpoint.name.lower() and search not in endpoint.url.lower():
                continue
            if (event and event not in endpoint.events) or (
                disabled and endpoint.disabled != (disabled == "true")
            ):
                continue
            chosen.append(endpoint)
        chosen.sort(key=lambda e: (e.created_at, e.id), reverse=True)
        page = [await self._view(e) for e in chosen[offset : offset + limit]]
        return 200, {
            "endpoints": page,
            "count": len(page),
            "total_count": len(chosen),
            "limit": limit,
            "offset": offset,
        }

    async def create(self, *, body: Any, **_: Any) -> tuple[int, Any]:
        endpoint = endpoint_from_request(body, secret=new_secret())
        if len(await self.records.webhook_all()) >= MAX_ENDPOINTS:
            raise AsyncJobError(
                400,
                f"at most {MAX_ENDPOINTS} webhook endpoints may exist",
                code="too_many_webhooks",
                param="name",
            )
        if not await self.records.webhook_create(
            endpoint.id, endpoint.name, self.plugin.sealer.dump(endpoint)
        ):
            raise AsyncJobError(
                409, "A webhook endpoint with this name already exists", code="conflict", param="name"
            )
        await self._saved()
        return 201, {"endpoint": await self._view(endpoint), "secret": endpoint.secret}

    async def get(self, *, ident: str, **_: Any) -> tuple[int, Any]:
        return 200, await self._view(await self._endpoint(ident))

    async def update(self, *, ident: str, body: Any, **_: Any) -> tuple[int, Any]:
        previous = await self._endpoint(ident)
        endpoint = endpoint_from_request(body, endpoint_id=ident, previous=previous)
        done = await self.records.webhook_replace(ident, endpoint.name, self.plugin.sealer.dump(endpoint))
        if done == "missing":
            raise _not_found("Webhook endpoint")
        if done == "conflict":
            raise AsyncJobError(
                409, "A webhook endpoint with this name already exists", code="conflict", param="name"
            )
        await self._saved()
        return 200, await self._view(endpoint)

    async def delete(self, *, ident: str, **_: Any) -> tuple[int, Any]:
        if not await self.records.webhook_delete(ident):
            raise _not_found("Webhook endpoint")
        await self._saved()
        return 200, {"status": "success"}

    async def rotate(self, *, ident: str, **_: Any) -> tuple[int, Any]:
        endpoint = await self._endpoint(ident)
        endpoint.secret = new_secret()  # effective from the next attempt, on every instance
        if (
            await self.records.webhook_replace(ident, endpoint.name, self.plugin.sealer.dump(endpoint))
            != "ok"
        ):
            raise _not_found("Webhook endpoint")
        await self._saved()
        return 200, {"endpoint": await self._view(endpoint), "secret": endpoint.secret}

    async def test(self, *, ident: str, body: Any, **_: Any) -> tuple[int, Any]:
        endpoint = await self._endpoint(ident)
        if endpoint.disabled:
            raise invalid("id", "Webhook endpoint is disabled")
        event = endpoint.events[0]
        if isinstance(body, dict) and body.get("event"):
            event = body["event"]
        elif body is not None and not isinstance(body, dict):
            raise invalid("body", "request body must be a JSON object")
        if event not in endpoint.events:
            raise invalid("event", f"Endpoint is not subscribed to event {str(event)[:100]!r}")
        job_id = f"test-{uuid.uuid4()}"
        attempt = attempt_for(endpoint, sample(self.plugin, endpoint, event, job_id))
        message = Message(endpoint.id, endpoint.name, f"msg_{job_id}", event, job_id)
        status, error = await self.plugin.dispatcher.post(message, attempt)
        if status is None:
            return 200, {"delivered": False, "error": error}
        return 200, {"delivered": 200 <= status < 300, "receiver_status_code": status}

    async def deliveries(self, *, ident: str, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        limit, offset = _int(query, "limit", 50, MAX_PAGE), _int(query, "offset", 0, 10**6)
        # history outlives its endpoint (as in Bifrost): no existence check
        page, total = await self.records.webhook_deliveries(ident, offset, limit)
        deliveries = [json.loads(document) for document in page]
        # Bifrost's search result shape: the page under "pagination", newest first
        pagination = {
            "limit": limit,
            "offset": offset,
            "sort_by": "timestamp",
            "order": "desc",
            "total_count": total,
        }
        return 200, {"deliveries": deliveries, "pagination": pagination}

    async def redeliver(self, *, ident: str, **_: Any) -> tuple[int, Any]:
        document = await self.records.webhook_delivery(ident)
        if document is None:
            raise _not_found("Webhook delivery")
        delivery = json.loads(document)
        endpoint = await self.plugin.load(delivery["endpoint_id"])
        if endpoint is None:
            raise invalid("id", "The endpoint this delivery belongs to no longer exists")
        if endpoint.disabled:
            raise invalid("id", "The endpoint this delivery belongs to is disabled")
        # same webhook-id as the original: the receiver's dedupe sees a replay, on purpose
        message = Message(
            endpoint.id, endpoint.name, delivery["webhook_id"], delivery["event"], delivery["async_job_id"]
        )
        await self.plugin.deliver(message)
        return 202, {"status": "queued", "webhook_id": delivery["webhook_id"]}
