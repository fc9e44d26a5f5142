"""OpenAPI operations of the header mode (``x-bf-async`` on provider routes, see
:mod:`bifrost_async.http.header_async`), added to the served document by
:func:`bifrost_async.http.openapi.openapi_document` when given the middleware's routes of it."""

from __future__ import annotations

from typing import Any

UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"

#: The body of a submit, and of a retrieve while the job has not ended.
SCHEMAS: dict[str, Any] = {
    "HeaderAsyncOpenAI": {
        "type": "object",
        "description": "An OpenAI Responses object whose id is the job id",
        "required": ["id", "object", "status"],
        "properties": {
            "id": {"type": "string", "pattern": UUID_PATTERN},
            "object": {"const": "response"},
            "created_at": {"type": "integer"},
            "status": {"enum": ["pending", "processing"]},
            "model": {"type": "string"},
            "output": {"type": "array", "maxItems": 0},
        },
    },
    "HeaderAsyncAnthropic": {
        "type": "object",
        "description": "An Anthropic Messages object whose id is the job id",
        "required": ["id", "type", "role", "content", "model"],
        "properties": {
            "id": {"type": "string", "pattern": UUID_PATTERN},
            "type": {"const": "message"},
            "role": {"const": "assistant"},
            "content": {"type": "array", "maxItems": 0},
            "model": {"type": "string"},
        },
    },
    "AnthropicError": {
        "type": "object",
        "required": ["type", "error"],
        "properties": {
            "type": {"const": "error"},
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

_HEADERS = (
    ("x-bf-async", "true (any value but false, 0, no or empty) submits the request as a job"),
    ("x-bf-async-id", "a job id: retrieve that job instead (the body is not read); wins over x-bf-async"),
    ("x-bf-async-job-result-ttl", "seconds the result is kept once the job has ended"),
)


def _operation(path: str, family: str) -> dict[str, Any]:
    shape = "HeaderAsyncOpenAI" if family == "openai" else "HeaderAsyncAnthropic"
    error = "Error" if family == "openai" else "AnthropicError"

    def answer(description: str, schema: str) -> dict[str, Any]:
        ref = {"$ref": f"#/components/schemas/{schema}"}
        return {"description": description, "content": {"application/json": {"schema": ref}}}

    completed = "once completed: the upstream's own response as it sent it; once failed: its error"
    return {
        "summary": f"Header-driven async on {path} ({family}); without the headers, the route itself",
        "operationId": f"header_async_{family}_{path.strip('/').replace('/', '_')}",
        "parameters": [
            {"name": name, "in": "header", "schema": {"type": "string"}, "description": text}
            for name, text in _HEADERS
        ],
        "requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": {
            "200": {
                **answer(f"submitted, pending or processing (id is the job id); {completed}", shape),
                "x-completed": "the upstream's response, unchanged",
            },
            "400": answer("invalid submit, streaming asked, or an unknown virtual key", error),
            "401": answer("an unknown API key (when the operator configured keys)", error),
            "404": answer("job not found or expired (also another owner's, another type's, or "
                          "another provider's route's)", error),
            "429": answer("the job queue is full", error),
            "503": answer("the job store is unavailable", error),
        },
        "x-header-async": family,
    }  # fmt: skip


def header_async_paths(routes: dict[str, str]) -> dict[str, Any]:
    """``paths`` entries for the header-mode ``routes`` (path -> ``"openai"``/``"anthropic"``)."""
    return {path: {"post": _operation(path, family)} for path, family in sorted(routes.items())}
