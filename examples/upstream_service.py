"""A small synchronous OpenAI-compatible service, to put ``bifrost-async serve`` in front of.

Run it, then the proxy in front of it (after ``pip install -e '.[transcribe]'``)::

    python examples/upstream_service.py --port 9000 &     # or UPSTREAM_PORT=9000
    bifrost-async serve --upstream http://127.0.0.1:9000 --port 8000

and submit an async transcription to the proxy::

    curl -s -F model=openai/whisper-1 -F file=@speech.wav http://127.0.0.1:8000/v1/async/audio/transcriptions

Endpoints (all synchronous):

- ``POST /v1/audio/transcriptions``: real English speech recognition with PocketSphinx (offline,
  its model ships inside the ``pocketsphinx`` wheel) for 16-bit PCM WAV; without ``pocketsphinx``
  installed the transcript is a clearly labelled placeholder. ``response_format`` json/text/srt/vtt.
- ``POST /v1/chat/completions``: echoes the last user message, word by word as server-sent events
  with ``"stream": true``. Not a language model.
- ``POST /v1/responses`` (and ``/openai/v1/responses``): an OpenAI Responses object whose output
  echoes the input text. Not a language model; no streaming. The proxy makes it async with
  ``x-bf-async: true`` (docs/HEADER_ASYNC.md).
- ``POST /v1/audio/speech``: a WAV tone whose length follows the input text. Not speech.
- ``POST /v1/embeddings``: deterministic hash vectors. Not semantic.
- ``GET /health``.

``examples/hello.wav`` is a clip to try it with: "hello world. please transcribe this recording.",
synthesised by ``espeak-ng -v en-us+f2 -s 150 -g 4``. PocketSphinx's small model hears
"hello world please transcribe the script or being": a real transcript, of a 2010s-era model.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import io
import json
import math
import multiprocessing
import multiprocessing.pool
import os
import signal
import struct
import time
import wave
from typing import Any

from aiohttp import web

try:  # optional extra "transcribe"
    from pocketsphinx import Decoder
except ImportError:  # pragma: no cover - depends on the environment
    Decoder = None

ENGINE = "pocketsphinx" if Decoder is not None else "placeholder"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error"}}, status=status)


def transcribe_wav(data: bytes) -> tuple[str, float]:
    """``(transcript, duration in seconds)`` of a PCM WAV file."""
    with wave.open(io.BytesIO(data)) as wav:
        rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
        frames = wav.readframes(wav.getnframes())
    seconds = len(frames) / float(rate * channels * width)
    if Decoder is None:
        return f"[placeholder transcript: pocketsphinx is not installed; {seconds:.2f} s of audio]", seconds
    if width != 2:
        raise ValueError("only 16-bit PCM WAV is supported")
    if channels > 1:  # keep the first channel: the decoder wants mono
        samples = struct.unpack(f"<{len(frames) // 2}h", frames)
        frames = struct.pack(f"<{len(samples) // channels}h", *samples[::channels])
    decoder = Decoder(samprate=rate)
    decoder.start_utt()
    decoder.process_raw(frames, full_utt=True)
    decoder.end_utt()
    hypothesis = decoder.hyp()
    return (hypothesis.hypstr if hypothesis is not None else ""), seconds


#: The app key of the process pool that decodes audio (set by :func:`serve`).
DECODERS = web.AppKey("decoders", multiprocessing.pool.Pool)


async def _decode(app: web.Application, data: bytes) -> tuple[str, float]:
    """Transcribe in a child process when :func:`serve` made a pool: PocketSphinx holds the GIL for
    a whole utterance, so in a thread it would keep this process deaf to SIGTERM until it ends
    (minutes for a long file); a child process is simply terminated at shutdown. Without a pool
    (the app used in-process), a thread keeps at least the event loop free."""
    pool = app.get(DECODERS)
    if pool is None:
        return await asyncio.to_thread(transcribe_wav, data)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[str, float]] = loop.create_future()

    def settle(outcome: Any, *, failed: bool = False) -> None:
        if not done.done():
            (done.set_exception if failed else done.set_result)(outcome)

    pool.apply_async(
        transcribe_wav,
        (data,),
        callback=lambda result: loop.call_soon_threadsafe(settle, result),
        error_callback=lambda exc: loop.call_soon_threadsafe(functools.partial(settle, exc, failed=True)),
    )
    return await done


async def transcriptions(request: web.Request) -> web.Response:
    form = await request.post()
    upload = form.get("file")
    if not isinstance(upload, web.FileField):
        return _error(400, "file is required")
    data = upload.file.read()
    print(f"transcribing {len(data)} bytes", flush=True)  # one line per job: see it working
    try:
        text, seconds = await _decode(request.app, data)
    except (wave.Error, EOFError, ValueError) as exc:
        return _error(400, f"could not read the audio as WAV: {exc}")
    response_format = str(form.get("response_format") or "json")
    if response_format == "text":
        return web.Response(text=text, content_type="text/plain")
    if response_format in ("srt", "vtt"):
        end = f"00:00:{min(seconds, 59.999):06.3f}"
        if response_format == "srt":
            return web.Response(
                text=f"1\n00:00:00,000 --> {end.replace('.', ',')}\n{text}\n", content_type="text/srt"
            )
        return web.Response(text=f"WEBVTT\n\n00:00:00.000 --> {end}\n{text}\n", content_type="text/vtt")
    return web.json_response({"text": text, "duration": round(seconds, 3), "engine": ENGINE})


async def chat_completions(request: web.Request) -> web.StreamResponse:
    try:
        body: dict[str, Any] = await request.json()
    except json.JSONDecodeError:
        return _error(400, "malformed JSON")
    messages = body.get("messages") or [{}]
    reply = f"echo: {messages[-1].get('content', '')}"
    base = {
        "id": f"chatcmpl-{int(time.time() * 1000)}",
        "created": int(time.time()),
        "model": body.get("model"),
    }
    if not body.get("stream"):
        message = {"role": "assistant", "content": reply}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return web.json_response({**base, "object": "chat.completion", "choices": [choice]})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    words = reply.split(" ")
    for n, word in enumerate(words):
        delta = {"role": "assistant", "content": word} if n == 0 else {"content": " " + word}
        chunk = {**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await asyncio.sleep(0.05)  # a model emits tokens over time; the proxy must not buffer them
    done = {
        **base,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }
    await response.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
    await response.write_eof()
    return response


def _input_text(value: Any) -> str:
    """The text of a Responses ``input``: a string, or the last message's text content."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        content = value[-1].get("content", "")
        if isinstance(content, list):
            return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
        return str(content)
    return ""


async def responses(request: web.Request) -> web.Response:
    try:
        body: dict[str, Any] = await request.json()
    except json.JSONDecodeError:
        return _error(400, "malformed JSON")
    if body.get("stream"):
        return _error(400, "this example does not stream responses")
    stamp = int(time.time() * 1000)
    text = f"echo: {_input_text(body.get('input'))}"
    content = [{"type": "output_text", "text": text, "annotations": []}]
    message = {
        "type": "message",
        "id": f"msg_{stamp}",
        "status": "completed",
        "role": "assistant",
        "content": content,
    }
    return web.json_response(
        {
            "id": f"resp_{stamp}",
            "object": "response",
            "created_at": stamp // 1000,
            "status": "completed",
            "model": body.get("model"),
            "output": [message],
        }
    )


async def speech(request: web.Request) -> web.Response:
    body = await request.json()
    seconds = min(0.1 + 0.05 * len(str(body.get("input", ""))), 10.0)
    rate = 16000
    samples = (int(8000 * math.sin(2 * math.pi * 440 * n / rate)) for n in range(int(rate * seconds)))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return web.Response(body=buffer.getvalue(), content_type="audio/wav")


async def embeddings(request: web.Request) -> web.Response:
    body = await request.json()
    inputs = body.get("input", "")
    inputs = inputs if isinstance(inputs, list) else [inputs]
    data = []
    for index, text in enumerate(inputs):
        digest = hashlib.sha256(str(text).encode()).digest()
        data.append(
            {"object": "embedding", "index": index, "embedding": [b / 255 - 0.5 for b in digest[:16]]}
        )
    return web.json_response({"object": "list", "data": data, "model": body.get("model")})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "transcription_engine": ENGINE})


def make_app() -> web.Application:
    """The service as an aiohttp application (uploads up to 100 MiB)."""
    app = web.Application(client_max_size=100 * 1024 * 1024)
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/responses", responses)
    app.router.add_post("/openai/v1/responses", responses)  # Bifrost's OpenAI-integration path
    app.router.add_post("/v1/audio/speech", speech)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/health", health)
    return app


async def serve(host: str, port: int) -> None:
    """Bind, say so, and serve until SIGTERM or SIGINT."""
    # keepalive_timeout 75 s: longer than the idle timeout of the pools in front (the proxy's 4 s),
    # as the README advises, so they, not we, close idle connections.
    app = make_app()
    # spawn, not fork: a forked child would inherit the event loop and the listening socket
    decoders = multiprocessing.get_context("spawn").Pool(2)
    app[DECODERS] = decoders
    runner = web.AppRunner(app, keepalive_timeout=75, shutdown_timeout=2)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        decoders.terminate()
        raise SystemExit(f"upstream_service: cannot listen on {host}:{port}: {exc.strerror}") from None
    # Printed only once the port is bound (the port the OS chose for --port 0), so a script may
    # wait for this line and then connect.
    bound_host, bound_port = runner.addresses[0][:2]
    print(f"upstream service listening on http://{bound_host}:{bound_port} (engine: {ENGINE})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    decoders.terminate()  # a decode in progress ends now, not when its utterance is done
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """``python examples/upstream_service.py [--host H] [--port P]``; the environment variables
    ``UPSTREAM_HOST`` and ``UPSTREAM_PORT`` set the defaults."""
    parser = argparse.ArgumentParser(description="A small synchronous OpenAI-compatible service.")
    parser.add_argument("--host", default=os.environ.get("UPSTREAM_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=port_number, default=os.environ.get("UPSTREAM_PORT", "9000"))
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))


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
