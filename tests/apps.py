"""A synchronous inference app for the tests: every route of the contract, with controllable faults.

The model name picks the behaviour: ``test/ok`` echoes, ``test/error`` answers an OpenAI-style 400,
``test/plain-error`` a text 503, ``test/crash`` raises, ``test/gate`` waits until the test opens
``app.state.gate``, ``test/hang`` never answers, ``test/silent`` returns without a response.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from bifrost_async.service.routes import DEFAULT_ROUTES

SPEECH_BYTES = bytes(range(256)) * 4


class Gate:
    """Holds gated requests until the test opens it; counts who is waiting."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.waiting = 0
        self.arrived = asyncio.Event()
        #: Set when a gated request was cancelled while it waited (a cancelled job's replay).
        self.cancelled = asyncio.Event()

    async def wait(self) -> None:
        self.waiting += 1
        self.arrived.set()
        try:
            await self.opened.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


async def _behave(model: str, request: Request) -> Response | None:
    if model == "test/error":
        error = {
            "message": "model test/error cannot do that",
            "type": "invalid_request_error",
            "code": "bad_model",
            "param": "model",
        }
        return JSONResponse({"error": error}, status_code=400)
    if model == "test/plain-error":
        return PlainTextResponse("upstream overloaded", status_code=503)
    if model == "test/crash":
        raise RuntimeError("secret-internal-detail")
    if model == "test/gate":
        await request.app.state.gate.wait()
    if model == "test/hang":
        await asyncio.Event().wait()
    return None


async def json_endpoint(request: Request) -> Response:
    body = json.loads(await request.body())
    early = await _behave(str(body.get("model")), request)
    if early is not None:
        return early
    if request.url.path == "/v1/audio/speech":
        return Response(SPEECH_BYTES, media_type="audio/mpeg")
    return JSONResponse(
        {
            "path": request.url.path,
            "query": request.url.query,
            "echo": body,
            "authorization": request.headers.get("authorization"),
            "lifespan_state": getattr(request.state, "started", None),
        }
    )


async def multipart_endpoint(request: Request) -> Response:
    async with request.form(max_part_size=200 * 1024 * 1024) as form:
        model = str(form.get("model"))
        sizes = {}
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                total = 0
                while chunk := await value.read(64 * 1024):
                    total += len(chunk)
                sizes[name] = total
        response_format = str(form.get("response_format") or "json")
    early = await _behave(model, request)
    if early is not None:
        return early
    text = f"heard {sum(sizes.values())} bytes"
    if response_format == "text":
        return PlainTextResponse(text)
    if response_format == "srt":
        return PlainTextResponse(f"1\n00:00:00,000 --> 00:00:01,000\n{text}\n", media_type="text/srt")
    if response_format == "vtt":
        return PlainTextResponse(f"WEBVTT\n\n00:00.000 --> 00:01.000\n{text}\n", media_type="text/vtt")
    return JSONResponse({"path": request.url.path, "model": model, "text": text, "sizes": sizes})


async def silent(scope: Any, receive: Any, send: Any) -> None:
    """An endpoint that returns without sending a response."""


async def streamed(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for n in range(3):
            yield f"data: {n}\n\n".encode()

    return StreamingResponse(chunks(), media_type="text/event-stream")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    yield {"started": "yes"}


def make_app() -> Starlette:
    """A fresh app with a route per contract type (at its default sync path) and a few extras."""
    routes = []
    for spec in DEFAULT_ROUTES:
        endpoint = multipart_endpoint if spec.body == "multipart" else json_endpoint
        routes.append(Route(spec.sync_path, endpoint, methods=["POST"]))
    routes += [
        Route("/api/transcribe", multipart_endpoint, methods=["POST"]),
        Route("/v1/audio/diarize", multipart_endpoint, methods=["POST"]),
        Route("/plain", lambda request: PlainTextResponse("untouched")),
        # provider routes of the header mode (x-bf-async), beside the contract's /v1/responses
        Route("/openai/v1/responses", json_endpoint, methods=["POST"]),
        Route("/v1/messages", json_endpoint, methods=["POST"]),
        Route("/anthropic/v1/messages", json_endpoint, methods=["POST"]),
        Route("/stream", streamed),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gate = Gate()
    return app


async def scripted_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An endpoint whose answer the request scripts, so a test controls each job's upstream
    answer: the JSON body's ``answer`` is ``{"status", "content_type", "body"}`` with ``body`` in
    base64 (absent: an empty body; ``content_type`` absent or null: no such header)."""
    if scope["type"] != "http":
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    answer = json.loads(b"".join(chunks))["answer"]
    body = base64.b64decode(answer.get("body", ""))
    headers = [(b"content-length", str(len(body)).encode())]
    if answer.get("content_type") is not None:
        headers.append((b"content-type", answer["content_type"].encode("latin-1")))
    await send({"type": "http.response.start", "status": answer["status"], "headers": headers})
    await send({"type": "http.response.body", "body": body})


def scripted(
    body: bytes, *, status: int = 200, content_type: str | None = "application/json"
) -> dict[str, Any]:
    """The submit body that makes :func:`scripted_app` answer ``body`` with this status and type."""
    answer = {"status": status, "content_type": content_type, "body": base64.b64encode(body).decode()}
    return {"model": "test/scripted", "answer": answer}
