"""An existing synchronous Starlette service, given Bifrost's async job API by one line.

Run it (after ``pip install -e .``)::

    python examples/transcription_app.py            # serves on http://127.0.0.1:8000

then submit an async transcription and poll it::

    curl -s -F model=openai/whisper-1 -F file=@some.wav http://127.0.0.1:8000/v1/async/audio/transcriptions
    curl -s http://127.0.0.1:8000/v1/async/audio/transcriptions/<id>

The "transcription" is a stand-in: it reports the audio's size and, for a WAV file, its duration;
it does not recognise speech. ``SLOW_SECONDS`` (default 2) simulates the model's work so that a
poll sees the job ``processing``. The point is the wrapper, not the model.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import wave

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bifrost_async import AsyncJobsMiddleware

SLOW_SECONDS = float(os.environ.get("SLOW_SECONDS", "2"))


def describe_audio(data: bytes) -> tuple[str, float]:
    """A placeholder transcript for ``data`` and the audio's duration in seconds (0 if unknown)."""
    try:
        with wave.open(io.BytesIO(data)) as wav:
            seconds = wav.getnframes() / float(wav.getframerate())
    except (wave.Error, EOFError):
        seconds = 0.0
    return f"[placeholder transcript of {len(data)} bytes of audio, {seconds:.2f} s]", seconds


async def transcribe(request: Request) -> Response:
    async with request.form(max_part_size=200 * 1024 * 1024) as form:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            return JSONResponse(
                {"error": {"message": "file is required", "type": "invalid_request_error"}}, 400
            )
        data = await upload.read()
        response_format = str(form.get("response_format") or "json")
    await asyncio.sleep(SLOW_SECONDS)
    text, seconds = describe_audio(data)
    if response_format == "text":
        return PlainTextResponse(text)
    if response_format in ("srt", "vtt"):
        stamp = f"00:00:00,000 --> 00:00:{min(seconds, 59):06.3f}".replace(".", ",")
        body = (
            f"1\n{stamp}\n{text}\n"
            if response_format == "srt"
            else f"WEBVTT\n\n{stamp.replace(',', '.')}\n{text}\n"
        )
        return PlainTextResponse(body, media_type=f"text/{response_format}")
    return JSONResponse({"text": text, "duration": seconds})


async def chat(request: Request) -> Response:
    body = json.loads(await request.body())
    last = body["messages"][-1]["content"] if body.get("messages") else ""
    await asyncio.sleep(SLOW_SECONDS)
    return JSONResponse(
        {
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"echo: {last}"},
                    "finish_reason": "stop",
                }
            ],
        }
    )


async def health(request: Request) -> Response:
    return JSONResponse({"ok": True})


app = Starlette(
    routes=[
        Route("/v1/audio/transcriptions", transcribe, methods=["POST"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/health", health),
    ]
)
# The one line that adds the async API:
app.add_middleware(AsyncJobsMiddleware, concurrency=4)

if __name__ == "__main__":
    uvicorn.run(app, host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000")))
