"""The bundled examples as a new user runs them (issue 12.9): a port from ``--port`` or the
environment, "listening" only once bound, and one line (no traceback) when the port is taken."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import signal
import socket
import time
import wave

import httpx
import pytest

from tests.example_support import EXAMPLES, Start, bound_url
from tests.proxy_support import free_port


async def test_upstream_says_listening_once_bound_on_the_port_it_got(start_example: Start) -> None:
    upstream = await start_example("upstream_service.py", "--port", "0")
    url = bound_url(await upstream.line_with("listening on"))
    assert not url.endswith(":0")
    async with httpx.AsyncClient() as client:
        assert (await client.get(url + "/health")).status_code == 200


async def test_upstream_port_from_the_environment(start_example: Start) -> None:
    port = free_port()
    upstream = await start_example("upstream_service.py", env={"UPSTREAM_PORT": str(port)})
    assert bound_url(await upstream.line_with("listening on")).endswith(f":{port}")


async def test_upstream_on_a_taken_port_says_so_in_one_line(start_example: Start) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        upstream = await start_example("upstream_service.py", "--port", str(port))
        assert upstream.process.stderr is not None
        err = (await asyncio.wait_for(upstream.process.stderr.read(), 60)).decode()
        assert await upstream.process.wait() != 0
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert f"cannot listen on 127.0.0.1:{port}" in err


@pytest.mark.slow  # two example processes, each importing the speech recogniser
async def test_transcription_app_port_from_flag_and_environment(start_example: Start) -> None:
    port = free_port()
    app = await start_example("transcription_app.py", env={"PORT": str(port)})
    assert app.process.stderr is not None
    async with asyncio.timeout(60):  # uvicorn says where it listens on stderr
        while f":{port}" not in (line := (await app.process.stderr.readline()).decode()):
            assert line, await app.process.wait()
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200
    other = free_port()
    flag = await start_example("transcription_app.py", "--port", str(other), env={"PORT": str(port)})
    assert flag.process.stderr is not None
    async with asyncio.timeout(60):
        while f":{other}" not in (line := (await flag.process.stderr.readline()).decode()):
            assert line, await flag.process.wait()


def long_recording(repeats: int) -> bytes:
    """``examples/hello.wav`` said ``repeats`` times in one WAV: a decode that takes a while."""
    with wave.open(str(EXAMPLES / "hello.wav")) as clip:
        params, frames = clip.getparams(), clip.readframes(clip.getnframes())
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setparams(params)
        wav.writeframes(frames * repeats)
    return out.getvalue()


@pytest.mark.slow
async def test_upstream_stops_on_sigterm_while_transcribing(start_example: Start) -> None:
    """SIGTERM in the middle of a long decode stops the service then, without the transcript: the
    decode runs in a child process that shutdown terminates (in a thread, PocketSphinx would hold
    the GIL until the whole utterance was decoded, about half a minute here)."""
    upstream = await start_example("upstream_service.py", "--port", "0")
    url = bound_url(await upstream.line_with("listening on"))
    audio = long_recording(40)

    async def transcribe() -> httpx.Response | Exception:
        async with httpx.AsyncClient(timeout=300) as client:
            try:
                return await client.post(
                    url + "/v1/audio/transcriptions",
                    files={"file": ("long.wav", audio, "audio/wav")},
                    data={"model": "whisper-1"},
                )
            except httpx.HTTPError as exc:
                return exc

    # the yardstick: how long one clip takes to decode on this machine now (40 clips take ~40x)
    one_clip = await asyncio.to_thread(timed_decode, long_recording(1))
    request = asyncio.create_task(transcribe())
    await upstream.line_with("transcribing")
    upstream.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    async with asyncio.timeout(180):  # bounds a broken run only
        assert await upstream.process.wait() == 0
        stopped_after = time.monotonic() - signalled
        answer = await request
    assert isinstance(answer, Exception) or answer.status_code >= 500, answer  # no transcript
    # A ratio measured in this run, not a timed assertion: a service deaf to SIGTERM until the
    # decode ends stops ~40 clips' time later (minus what it decoded before the signal).
    assert stopped_after < 10 * one_clip, (stopped_after, one_clip)


def timed_decode(audio: bytes) -> float:
    """Seconds the example's own ``transcribe_wav`` takes for ``audio``, in this process."""
    spec = importlib.util.spec_from_file_location(
        "upstream_service_example", EXAMPLES / "upstream_service.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    started = time.monotonic()
    module.transcribe_wav(audio)
    return time.monotonic() - started
