"""OpenAPI operations of the opt-in extensions (docs/EXTENSIONS.md): list, cancel/delete and the
raw result, marked ``x-extension: true``. Merged into ``openapi_document`` per route."""

from __future__ import annotations

from typing import Any

from bifrost_async.service.routes import RouteSpec

_JOB_REF = {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}
_ERROR_REF = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
_RETRY = {"Retry-After": {"schema": {"type": "string"}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _ERROR_REF}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def extension_operations(spec: RouteSpec) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(list on the submit path, delete on the poll path, get on the result path)``."""
    noun = spec.noun or spec.request_type
    listing = {
        "operationId": f"list_{spec.request_type}",
        "summary": f"List your own async {noun} jobs, newest first",
        "tags": [spec.request_type],
        "x-extension": True,
        "parameters": [
            _query("status", {"enum": ["pending", "processing", "completed", "failed"]}, "only this status"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "page size (20)"),
            _query("cursor", {"type": "string"}, "next_cursor of the previous page"),
        ],
        "responses": {
            "200": {
                "description": "one page",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["object", "data", "has_more"],
                            "properties": {
                                "object": {"const": "list"},
                                "data": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                                "has_more": {"type": "boolean"},
                                "next_cursor": {"type": "string"},
                            },
                        }
                    }
                },
            },
            "400": _error("invalid status, limit or cursor"),
            "403": _error("no credential: only owned jobs are listed"),
            "431": _error("request headers too large"),
            "503": _error("job store unavailable"),
        },
    }
    cancel = {
        "operationId": f"cancel_{spec.request_type}",
        "summary": f"Cancel a pending or running {noun} job, or delete a finished one",
        "tags": [spec.request_type],
        "x-extension": True,
        "parameters": [_JOB_ID],
        "responses": {
            "200": {"description": "cancelled: failed, status_code 499", "content": _JOB_REF},
            "204": {"description": "the finished job was deleted"},
            "404": _error("job not found or expired"),
            "431": _error("request headers too large"),
            "503": _error("job store unavailable"),
        },
    }
    result = {
        "operationId": f"result_{spec.request_type}",
        "summary": f"The synchronous endpoint's own response to a {noun} job, byte for byte",
        "tags": [spec.request_type],
        "x-extension": True,
        "parameters": [_JOB_ID],
        "responses": {
            "202": {"description": "not finished yet", "content": _JOB_REF, "headers": _RETRY},
            "404": _error("job not found or expired"),
            "431": _error("request headers too large"),
            "default": {"description": "the endpoint's response (any status and content type)"},
        },
    }
    return listing, cancel, result
