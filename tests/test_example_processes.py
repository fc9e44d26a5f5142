"""The bundled examples as a new user runs them (issue 12.9): a port from ``--port`` or the
environment, "listening" only once bound, and one line (no traceback) when the port is taken."""

from __future__ import annotations

import asyncio
import socket

import httpx

from .example_support import Start, bound_url
from .proxy_support import free_port


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
