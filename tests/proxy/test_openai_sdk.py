"""The official ``openai`` package pointed at the proxy, in front of the example upstream service
(``examples/upstream_service.py``): synchronous transcription and streaming chat through the
pass-through, and the async transcription flow the README shows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from tests.proxy_support import (
    CLIP,
    UPSTREAM_EXAMPLE,
    ProxyProcess,
    check_transcript,
    example_proxy,
    wait_job,
)


@pytest.fixture
async def proxy(aiohttp_server: Any) -> AsyncIterator[ProxyProcess]:
    async with example_proxy(aiohttp_server) as running:
        yield running


@pytest.fixture
async def client(proxy: ProxyProcess) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key="sk-test", max_retries=0) as sdk:
        yield sdk


async def test_openai_sync_transcription_through_the_proxy(client: openai.AsyncOpenAI) -> None:
    with CLIP.open("rb") as audio:
        transcript = await client.audio.transcriptions.create(model="whisper-1", file=audio)
    check_transcript(transcript.text)


async def test_openai_streaming_chat_through_the_proxy(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="echo-1", messages=[{"role": "user", "content": "stream these words please"}], stream=True
    )
    deltas = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices[0].delta.content]
    assert len(deltas) == 5  # one event per word, not one buffered blob
    assert "".join(deltas) == "echo: stream these words please"


async def test_openai_embeddings_and_speech_through_the_proxy(client: openai.AsyncOpenAI) -> None:
    embedding = await client.embeddings.create(model="hash-1", input=["a", "b"])
    assert [len(item.embedding) for item in embedding.data] == [16, 16]
    speech = await client.audio.speech.create(model="tone-1", voice="alloy", input="hi")
    assert speech.content.startswith(b"RIFF")


async def test_async_transcription_of_the_example_clip(proxy: ProxyProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        submitted = await http.post(
            f"{proxy.url}/v1/async/audio/transcriptions",
            data={"model": "openai/whisper-1"},
            files={"file": ("hello.wav", CLIP.read_bytes(), "audio/wav")},
        )
        assert submitted.status_code == 202
        done = (await wait_job(http, proxy.url + submitted.headers["location"], deadline=30)).json()
    assert done["status"] == "completed", done
    check_transcript(done["result"]["text"])
    assert done["result"]["engine"] == UPSTREAM_EXAMPLE.ENGINE


async def test_header_mode_with_the_openai_sdk_as_the_readme_shows(
    client: openai.AsyncOpenAI, proxy: ProxyProcess
) -> None:
    submitted = await client.responses.create(
        model="echo-1", input="make me async", extra_headers={"x-bf-async": "true"}
    )
    assert submitted.status == "pending" and submitted.object == "response"
    async with httpx.AsyncClient(timeout=30) as http:  # the same job on the /v1/async route
        auth = {"Authorization": "Bearer sk-test"}  # the key the SDK sends: the same owner
        polled = await wait_job(http, f"{proxy.url}/v1/async/responses/{submitted.id}", headers=auth)
    assert polled.json()["status"] == "completed"
    done = await client.responses.create(
        model="echo-1", input="", extra_headers={"x-bf-async-id": submitted.id}
    )
    assert done.id.startswith("resp_") and done.status == "completed"
    assert done.output_text == "echo: make me async"
