"""An existing synchronous Starlette service, given Bifrost's async job API by one line.

Run it (after ``pip install -e .``)::

    python examples/transcription_app.py            # serves on http://127.0.0.1:8000
    python examples/transcription_app.py --port 8100  # or PORT=8100 (and --host / HOST)

then submit an async transcription and poll it::

    curl -s -F model=openai/whisper-1 -F file=@some.wav http://127.0.0.1:8000/v1/async/audio/transcriptions
    curl -s http://127.0.0.1:8000/v1/async/audio/transcriptions/<id>

With the ``transcribe`` extra (``pip install -e '.[transcribe]'``) a 16-bit PCM WAV file is really
recognised, offline, by PocketSphinx (``examples/hello.wav`` says a few words); without it, or for
other audio, the transcript is a labelled placeholder that reports the audio's size and duration.
``SLOW_SECONDS`` (default 1) adds model-like latency so that a poll sees the job ``processing``.
"""

from __future__ import annotations

import argparse
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

try:  # the bundled upstream example holds the PocketSphinx recogniser
    from upstream_service import transcribe_wav
except ImportError:  # imported from elsewhere than examples/
    transcribe_wav = None

SLOW_SECONDS = float(os.environ.get("SLOW_SECONDS", "1"))


def describe_audio(data: bytes) -> tuple[str, float]:
    """A transcript of ``data`` and the audio's duration in seconds (0 if unknown): PocketSphinx's
    when it is installed and the audio is a PCM WAV, else a labelled placeholder."""
    if transcribe_wav is not None:
        try:
            return transcribe_wav(data)
        except (wave.Error, EOFError, ValueError):
            pass
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
    # recognition is CPU-bound: run it off the event loop so polls keep being answered
    text, seconds = await asyncio.to_thread(describe_audio, data)
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


def main(argv: list[str] | None = None) -> None:
    """``python examples/transcription_app.py [--host H] [--port P]``; the environment variables
    ``HOST`` and ``PORT`` set the defaults."""
    parser = argparse.ArgumentParser(description="A Starlette transcription app with the async job API.")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=port_number, default=os.environ.get("PORT", "8000"))
    args = parser.parse_args(argv)
    # A keep-alive longer than the clients' pool idle timeout (httpx: 5 s, ours: 4 s), as the
    # README advises: at uvicorn's default of 5 s a request sent as we close an idle connection
    # fails with a reset.
    uvicorn.run(app, host=args.host, port=args.port, timeout_keep_alive=75)


def port_number(text: str) -> int:
    """A TCP port (0 picks a free one), for argparse: a bad one is a one-line usage error."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is out of range (allowed: from 0 to 65535)")
    return port


if __name__ == "__main__":
    main()
