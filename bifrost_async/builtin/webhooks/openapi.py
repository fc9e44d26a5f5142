"""The OpenAPI description of the webhook management API ``/api/webhooks`` (added to the
document by :class:`~bifrost_async.builtin.webhooks.plugin.WebhooksPlugin` when its admin token is set)."""

from __future__ import annotations

from typing import Any

from bifrost_async.builtin.webhooks.endpoints import EVENTS, TUNING

_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_TOKEN = {
    "name": "X-Bifrost-Setup-Token",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "the admin token (or send it as Authorization: Bearer <token>)",
}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_PAGE = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 0, "maximum": 100},
    },
    {"name": "offset", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
]
_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["name", "url", "events"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 255},
        "url": {"type": "string", "description": "https, or http with allow_private_network"},
        "events": {"type": "array", "minItems": 1, "items": {"enum": list(EVENTS)}},
        "headers": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "custom delivery headers; values are shown as <redacted>",
        },
        "include_response": {"type": "boolean", "default": False},
        "allow_private_network": {"type": "boolean", "default": False},
        "disabled": {"type": "boolean", "default": False},
        "record_request_body": {"type": "boolean", "default": False},
        **{
            knob: {
                "type": "integer",
                "minimum": 0,
                "maximum": largest,
                "description": f"0: default {default}",
            }
            for knob, (default, largest) in TUNING.items()
        },
    },
}
_ENDPOINT: dict[str, Any] = {
    "type": "object",
    "properties": {
        **_REQUEST["properties"],
        "id": {"type": "string"},
        "successes": {"type": "integer"},
        "failures": {"type": "integer"},
        "consecutive_failures": {"type": "integer"},
        "last_status_code": {"type": "integer"},
        "last_success_at": {"type": "string", "format": "date-time"},
        "last_failure_at": {"type": "string", "format": "date-time"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}
_WITH_SECRET = {
    "type": "object",
    "properties": {"endpoint": _ENDPOINT, "secret": {"type": "string", "description": "shown only here"}},
}


def _op(
    summary: str, ok: int, schema: dict[str, Any], *, body: bool = False, more: tuple[Any, ...] = ()
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": ["webhooks"],
        "summary": summary,
        "parameters": [_TOKEN, *more],
        "responses": {
            str(ok): {"description": summary, "content": {"application/json": {"schema": schema}}},
            "400": {"description": "invalid field (error.param names it)", **_ERROR},
            "401": {"description": "missing or wrong admin token", **_ERROR},
            "404": {"description": "unknown id, or the API is off (no admin token configured)", **_ERROR},
        },
    }
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _REQUEST}}}
    return operation


def admin_paths(prefix: str = "/api/webhooks") -> dict[str, Any]:
    """The ``paths`` entries of the management API."""
    obj: dict[str, Any] = {"type": "object"}
    filters = [
        {"name": "search", "in": "query", "required": False, "schema": {"type": "string"}},
        {"name": "event", "in": "query", "required": False, "schema": {"enum": list(EVENTS)}},
        {"name": "disabled", "in": "query", "required": False, "schema": {"type": "boolean"}},
    ]
    create = _op("create an endpoint (409 if the name is taken)", 201, _WITH_SECRET, body=True)
    create["responses"]["409"] = {"description": "name taken", **_ERROR}
    return {
        prefix: {"get": _op("list endpoints", 200, obj, more=(*filters, *_PAGE)), "post": create},
        f"{prefix}/{{id}}": {
            "get": _op("one endpoint", 200, _ENDPOINT, more=(_ID,)),
            "put": _op("replace an endpoint", 200, _ENDPOINT, body=True, more=(_ID,)),
            "delete": _op("delete an endpoint", 200, obj, more=(_ID,)),
        },
        f"{prefix}/{{id}}/rotate-secret": {"post": _op("new signing secret", 200, _WITH_SECRET, more=(_ID,))},
        f"{prefix}/{{id}}/test": {"post": _op("send a synthetic event", 200, obj, more=(_ID,))},
        f"{prefix}/{{id}}/deliveries": {"get": _op("delivery history", 200, obj, more=(_ID, *_PAGE))},
        f"{prefix}/deliveries/{{id}}/redeliver": {
            "post": _op("redeliver (400 if the endpoint is disabled)", 202, obj, more=(_ID,))
        },
    }
