"""The OpenAPI 3.1 document of the async routes, built from the route table.

The middleware serves it at ``{prefix}/openapi.json``. It follows the configuration: route
overrides and extra request types appear as they are configured, so the document describes the
server actually running. Extensions beyond Bifrost's contract are marked ``x-extension: true``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bifrost_async.http.openapi_extensions import extension_operations
from bifrost_async.http.openapi_header_async import SCHEMAS as HEADER_ASYNC_SCHEMAS
from bifrost_async.http.openapi_header_async import header_async_paths
from bifrost_async.service.routes import RouteSpec, RouteTable

UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"

_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error", "extra_fields"],
    "properties": {
        "event_id": {"type": "string"},
        "type": {"type": "string"},
        "is_bifrost_error": {"type": "boolean"},
        "status_code": {"type": "integer"},
        "error": {
            "type": "object",
            "required": ["message"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": "string"},
                "param": {"type": "string"},
                "event_id": {"type": "string"},
            },
        },
        "extra_fields": {"type": "object"},
    },
}

_JOB: dict[str, Any] = {
    "type": "object",
    "required": ["id", "request_id", "status", "created_at"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": UUID_PATTERN},
        "request_id": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "processing", "completed", "failed"]},
        "created_at": {"type": "string", "format": "date-time"},
        "completed_at": {"type": "string", "format": "date-time"},
        "expires_at": {"type": "string", "format": "date-time"},
        "status_code": {"type": "integer", "minimum": 100, "maximum": 599},
        "result": {"description": "the synchronous endpoint's JSON, {text} or {audio, content_type}"},
        "error": {"$ref": "#/components/schemas/Error"},
    },
}

_RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"},
        "description": "whole seconds to wait before asking again; on a 202, "
        "half the time the job probably still needs (its type's typical run time, its queue place), "
        "1 to retry_after_max",
    }
}


def _error(description: str, retry: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry:
        response["headers"] = _RETRY_AFTER
    return response


def _job(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}},
    }
    if headers:
        response["headers"] = headers
    return response


def _header(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }


def _stream_rule(spec: RouteSpec) -> dict[str, Any]:
    """What the stream field may not be (async jobs refuse streaming)."""
    if spec.body == "multipart":  # form values are text: only "true" (any case, padded) is refused
        letters = "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in str(spec.stream_value))
        return {"type": "string", "pattern": f"^(?!\\s*{letters}\\s*$)"}
    return {"not": {"const": spec.stream_value}}


def _request_body(spec: RouteSpec) -> dict[str, Any]:
    # blank is refused like missing
    properties: dict[str, Any] = {"model": {"type": "string", "pattern": "\\S"}}
    if spec.stream_field is not None:
        properties[spec.stream_field] = _stream_rule(spec)
    if spec.body == "json":
        schema: dict[str, Any] = {"type": "object", "required": ["model"], "properties": properties}
        return {"required": True, "content": {"application/json": {"schema": schema}}}
    file_field = spec.file_fields[0] if spec.file_fields else "file"
    properties[file_field] = {"type": "string", "format": "binary", "minLength": 1}
    schema = {"type": "object", "required": ["model", file_field], "properties": properties}
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


def _operations(
    spec: RouteSpec, extra_parameters: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    submit = {
        "operationId": f"submit_{spec.request_type}",
        "summary": f"Submit an async {spec.noun or spec.request_type} job (replayed to {spec.sync_path})",
        "tags": [spec.request_type],
        "parameters": [
            _header("x-bf-async-job-result-ttl", "result lifetime in seconds, counted from completion"),
            _header("x-request-id", "echoed as request_id"),
            *extra_parameters,
        ],
        "requestBody": _request_body(spec),
        "responses": {
            "202": _job(
                "accepted: the pending job", {"Location": {"schema": {"type": "string"}}, **_RETRY_AFTER}
            ),
            "400": _error("malformed body, streaming asked for, no model or file, unknown webhook"),
            "413": _error("body over the size limit"),
            "429": _error("job queue full", retry=True),
            "431": _error("request headers too large"),
            "503": _error("job store unavailable or shutting down", retry=True),
        },
    }
    poll = {
        "operationId": f"poll_{spec.request_type}",
        "summary": f"Poll an async {spec.noun or spec.request_type} job",
        "tags": [spec.request_type],
        "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {
            "200": _job("the job has ended: completed with result, or failed with error"),
            "202": _job("pending or processing", _RETRY_AFTER),
            "404": _error("job not found or expired"),
            "431": _error("request headers too large"),
            "503": _error("job store unavailable", retry=True),
        },
    }
    return submit, poll


def _head_of(get: dict[str, Any]) -> dict[str, Any]:
    """The ``HEAD`` twin of a ``GET`` operation: same parameters, statuses and headers, no body."""
    head = {**get, "summary": f"{get.get('summary', '')} (HEAD: headers only)".strip()}
    if "operationId" in get:
        head["operationId"] = f"{get['operationId']}_head"
    head["responses"] = {
        status: {key: value for key, value in response.items() if key != "content"}
        for status, response in get["responses"].items()
    }
    return head


def openapi_document(
    routes: RouteTable,
    plugins: Iterable[Any] = (),
    *,
    title: str = "bifrost-async job API",
    header_async: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``routes`` (a :class:`RouteTable`), and for the header
    mode's provider routes when ``header_async`` (path -> provider family) is given.

    A plugin among ``plugins`` that has an ``openapi_submit_parameters()`` method adds the
    OpenAPI parameters it returns to every submit (the webhook plugin documents its header); one
    with an ``openapi_paths()`` method adds the paths it returns (the webhook management API)."""
    from bifrost_async import __version__  # the package imports the middleware, which imports this module

    extra: list[dict[str, Any]] = []
    for plugin in plugins:
        method = getattr(plugin, "openapi_submit_parameters", None)
        if callable(method):
            extra.extend(method())
    paths: dict[str, Any] = {}
    for spec in routes:
        submit, poll = _operations(spec, extra)
        listing, cancel, result = extension_operations(spec)
        base = f"{routes.prefix}/{spec.path}"
        paths[base] = {"post": submit, "get": listing, "head": _head_of(listing)}
        paths[f"{base}/{{job_id}}"] = {"get": poll, "head": _head_of(poll), "delete": cancel}
        paths[f"{base}/{{job_id}}/result"] = {"get": result, "head": _head_of(result)}
    for plugin in plugins:
        more = getattr(plugin, "openapi_paths", None)
        if callable(more):
            paths.update(more())
    schemas: dict[str, Any] = {"Job": _JOB, "Error": _ERROR}
    if header_async:
        paths.update(header_async_paths(dict(header_async)))
        schemas.update(HEADER_ASYNC_SCHEMAS)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": __version__,
            "description": "Bifrost's async job API: submit answers 202 with a job, poll until 200.",
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
