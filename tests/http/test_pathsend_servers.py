"""Issue 11.9: under a server that offers ``http.response.pathsend`` (Granian), a Starlette
``FileResponse`` sends the file's path instead of its bytes; the ASGI replay must turn that into
the job's result, not a completed job with an empty body. uvicorn does not offer the extension,
so a thin wrapper advertises it, as such a server would, in front of the middleware."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Route

from bifrost_async import AsyncJobsMiddleware
from tests.helpers import Recorder, Stack

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def _advertise_pathsend(app: Any) -> Any:
    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "extensions": {**scope.get("extensions", {}), "http.response.pathsend": {}}}
        await app(scope, receive, send)

    return wrapped


async def _stack(serve: Any, answer: Path, **options: Any) -> Stack:
    async def endpoint(request: Request) -> FileResponse:
        return FileResponse(answer, media_type="application/json")

    app = Starlette(routes=[Route("/v1/chat/completions", endpoint, methods=["POST"])])
    recorder = Recorder()
    middleware = AsyncJobsMiddleware(app, plugins=[recorder], **options)
    server = await serve(_advertise_pathsend(middleware))
    return Stack(server.url, app, middleware, recorder, server)


async def test_a_file_response_sent_by_path_is_the_result(
    serve: Any, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    answer = tmp_path / "answer.json"
    answer.write_text(json.dumps({"choices": [{"message": {"content": "from a file"}}]}))
    stack = await _stack(serve, answer)
    done = await stack.finish(
        http, "chat/completions", await stack.submit(http, "chat/completions", json=CHAT)
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed"
    assert done.json()["result"] == {"choices": [{"message": {"content": "from a file"}}]}


async def test_a_file_over_the_result_limit_fails_the_job(
    serve: Any, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    answer = tmp_path / "answer.json"
    answer.write_text(json.dumps({"padding": "x" * 4096}))
    stack = await _stack(serve, answer, max_result_bytes=1024)
    done = await stack.finish(
        http, "chat/completions", await stack.submit(http, "chat/completions", json=CHAT)
    )
    assert done.json()["status"] == "failed"
    assert done.json()["error"]["error"]["code"] == "result_too_large", done.text
