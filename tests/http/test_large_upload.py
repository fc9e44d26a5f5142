"""A 50 MB multipart upload is submitted and replayed without being held in memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import build_stack

SIZE = 50 * 1024 * 1024


async def test_50mb_upload_streams_through_spool(serve: Any, http: httpx.AsyncClient, tmp_path: Path) -> None:
    audio = tmp_path / "big.wav"
    with audio.open("wb") as out:
        block = bytes(range(256)) * 4096  # 1 MiB
        for _ in range(SIZE // len(block)):
            out.write(block)
    stack = await build_stack(serve, max_body_bytes=64 * 1024 * 1024, spool_dir=str(tmp_path))
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with audio.open("rb") as upload:
            submitted = await stack.submit(
                http,
                "audio/transcriptions",
                data={"model": "openai/whisper-1"},
                files={"file": ("big.wav", upload)},
            )
        done = await stack.finish(http, "audio/transcriptions", submitted)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    job = done.json()
    assert job["status"] == "completed", job
    assert job["result"]["sizes"] == {"file": SIZE}
    # client, server, spool, validation and replay all ran in this process: together they
    # never held more than a small fraction of the body at once
    print(f"peak traced Python memory for a {SIZE >> 20} MiB upload: {peak / 2**20:.1f} MiB")
    assert peak < SIZE / 5
    assert not list(tmp_path.glob("bifrost-async-*")), "the spool file outlived its job"
