"""A real aiohttp upstream for the proxy tests: every synchronous route of the contract, plus echo,
binary, SSE and status routes for the pass-through."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from aiohttp import web

from bifrost_async.service.routes import DEFAULT_ROUTES

SPEECH_BYTES = bytes(range(256)) * 8
CREDENTIAL_HEADERS = ("authorization", "x-api-key", "x-bf-vk", "x-goog-api-key")


class UpstreamState:
    """What the tests observe and steer: request log, SSE gate."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.sse_release = asyncio.Event()
        self.sse_final_sent = False
        #: Requests for a ``gate/...`` model wait until the test sets ``gate``.
        self.gate = asyncio.Event()
        self.gated = asyncio.Event()


STATE = web.AppKey("state", UpstreamState)


def _seen(request: web.Request, **extra: Any) -> dict[str, Any]:
    return {
        "method": request.method,
        "path": request.path,
        "raw_path": request.raw_path,
        "query": request.query_string,
        "headers": {k.lower(): v for k, v in request.headers.items()},
        **extra,
    }


async def sync_route(request: web.Request) -> web.StreamResponse:
    """Any contract route: answer like the real endpoint would, reporting what arrived."""
    state: UpstreamState = request.app[STATE]
    if request.content_type == "multipart/form-data":
        form = await request.post()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        files = {
            k: hashlib.sha256(v.file.read()).hexdigest()
            for k, v in form.items()
            if isinstance(v, web.FileField)
        }
    else:
        fields, files = await request.json(), {}
    info = _seen(request, fields=fields, files=files)
    state.seen.append(info)
    model = str(fields.get("model", ""))
    if model.startswith("gate/"):
        state.gated.set()
        await asyncio.wait_for(state.gate.wait(), 20)
    if model.startswith("fail/"):
        status = int(model.split("/")[1])
        error = {
            "message": f"upstream refused model {model}",
            "type": "invalid_request_error",
            "code": "bad_model",
        }
        return web.json_response({"error": error}, status=status)
    if request.path == "/v1/audio/speech":
        return web.Response(body=SPEECH_BYTES, content_type="audio/mpeg")
    if request.path == "/v1/audio/transcriptions" and fields.get("response_format") == "text":
        return web.Response(text=f"transcript of {files['file'][:12]}", content_type="text/plain")
    auth = {h: info["headers"][h] for h in CREDENTIAL_HEADERS if h in info["headers"]}
    return web.json_response({"path": request.path, "model": model, "files": files, "auth": auth})


async def echo(request: web.Request) -> web.StreamResponse:
    """Pass-through: stream the request body back as it arrives, with what was seen in headers."""
    state: UpstreamState = request.app[STATE]
    info = _seen(request)
    state.seen.append(info)
    response = web.StreamResponse(
        status=int(request.query.get("status", "200")),
        headers={
            "Content-Type": request.headers.get("Content-Type", "application/octet-stream"),
            "X-Upstream-Seen": json.dumps(info["headers"]),
            "X-Upstream-Method": request.method,
            "X-Upstream-Path": request.raw_path,
            "X-Hop": "should not pass",
            "Connection": "X-Hop",
        },
    )
    await response.prepare(request)
    async for chunk in request.content.iter_any():
        await response.write(chunk)
    await response.write_eof()
    return response


async def binary(request: web.Request) -> web.Response:
    size = int(request.query.get("size", "1048576"))
    return web.Response(
        body=hashlib.sha256(b"seed").digest() * (size // 32), content_type="application/octet-stream"
    )


async def sse(request: web.Request) -> web.StreamResponse:
    """Send one event, wait until the test says the client has it, then finish."""
    state: UpstreamState = request.app[STATE]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b'data: {"choices":[{"delta":{"content":"first"}}]}\n\n')
    await asyncio.wait_for(state.sse_release.wait(), 10)
    await response.write(b'data: {"choices":[{"delta":{"content":"last"}}]}\n\ndata: [DONE]\n\n')
    state.sse_final_sent = True
    await response.write_eof()
    return response


async def status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    return web.json_response({"error": {"message": f"upstream says {code}"}}, status=code)


async def root(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def make_upstream() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE] = UpstreamState()
    for spec in DEFAULT_ROUTES:
        app.router.add_post(spec.sync_path, sync_route)
    for path in ("/openai/v1/responses", "/v1/messages", "/anthropic/v1/messages"):
        app.router.add_post(path, sync_route)  # provider routes of the header mode (x-bf-async)
    app.router.add_route("*", "/echo{tail:.*}", echo)
    app.router.add_get("/binary", binary)
    app.router.add_get("/sse", sse)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/", root)
    return app
