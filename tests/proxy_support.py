"""Helpers for the standalone-proxy tests: the real CLI as a subprocess, raw fault servers, job polling."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import socket
import struct
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
START_DEADLINE = 20.0
#: The bundled speech clip (espeak-ng: "hello world. please transcribe this recording.").
CLIP = ROOT / "examples" / "hello.wav"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` (the examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


#: The example synchronous upstream (PocketSphinx transcription when installed).
UPSTREAM_EXAMPLE = load_example("upstream_service")


def check_transcript(text: str) -> None:
    """The example upstream's transcript of :data:`CLIP`: PocketSphinx is deterministic and gets
    the start right; without it, the labelled placeholder."""
    if UPSTREAM_EXAMPLE.ENGINE == "pocketsphinx":
        assert text.startswith("hello world please transcribe"), text
    else:
        assert text.startswith("[placeholder transcript: pocketsphinx is not installed"), text


@contextlib.asynccontextmanager
async def example_proxy(aiohttp_server: Any) -> AsyncIterator[ProxyProcess]:
    """The real CLI in front of the example upstream."""
    upstream = await aiohttp_server(UPSTREAM_EXAMPLE.make_app())
    async with run_proxy(f"http://127.0.0.1:{upstream.port}", "--read-timeout", "30") as running:
        yield running


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProxyProcess:
    """``python -m bifrost_async serve`` on a free port; its stderr (the logs) kept in a file."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, log: Any) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log = log

    def logs(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text()

    async def wait_ready(self) -> None:
        """Poll ``/healthz`` until it answers, with a bounded deadline; fail with the logs if the
        process exits first."""
        deadline = time.monotonic() + START_DEADLINE
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"proxy exited with {self.process.returncode}:\n{self.logs()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(self.url + "/healthz")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"proxy did not answer within {START_DEADLINE} s:\n{self.logs()}")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.process.wait(), 0.05)

    async def stop(self) -> int:
        """SIGTERM (uvicorn's graceful shutdown), then the exit code."""
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        return int(self.process.returncode or 0)


@contextlib.asynccontextmanager
async def run_proxy(
    upstream: str | None, *args: str, env: dict[str, str] | None = None, ready: bool = True
) -> AsyncIterator[ProxyProcess]:
    """Start the real CLI in front of ``upstream`` and stop it afterwards."""
    argv = [sys.executable, "-m", "bifrost_async", "serve", "--log-format", "json"]
    listener = contextlib.ExitStack()
    inherited: list[int] = []
    if env and "BIFROST_ASYNC_PORT" in env:
        port = int(env["BIFROST_ASYNC_PORT"])
    else:
        # bound here and handed over (--fd): no other process can take the port in between
        sock = listener.enter_context(socket.socket())
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        inherited.append(sock.fileno())
        argv += ["--fd", str(sock.fileno())]
    if upstream is not None:
        argv += ["--upstream", upstream]
    argv += list(args)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("BIFROST_ASYNC_")}
    child_env.update(env or {})
    with tempfile.NamedTemporaryFile("w+", prefix="proxy-log-", suffix=".txt") as log:
        with listener:  # the parent's copy closes once the child holds its own
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=ROOT,
                env=child_env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=inherited,
            )
        proxy = ProxyProcess(process, port, log)
        try:
            if ready:
                await proxy.wait_ready()
            yield proxy
        finally:
            await proxy.stop()


async def wait_job(client: httpx.AsyncClient, poll_url: str, *, deadline: float = 15.0, **kw: Any) -> Any:
    """Poll a job until it is completed or failed (bounded); return the last response."""
    end = time.monotonic() + deadline
    while True:
        response = await client.get(poll_url, **kw)
        if response.status_code != 202:
            return response
        if time.monotonic() > end:
            raise AssertionError(f"job still {response.json()['status']} after {deadline} s")
        await asyncio.sleep(0.02)


class FaultServer:
    """A raw TCP upstream that misbehaves in one way.

    Modes: ``hangup`` reads the request and closes without a word (a refusing upstream);
    ``garbage`` answers bytes that are not HTTP; ``reset`` sends a valid head and part of the
    body, then resets the connection; ``slow`` reads the request and never answers.
    ``aborted`` is set when a client closes a ``slow`` connection. ``keepalive`` behaves well: it
    answers every GET with keep-alive and never closes an idle connection itself; ``idle_closed``
    is set when a client closes one after an answer.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests = 0
        self.aborted = asyncio.Event()
        self.idle_closed = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FaultServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self._writers:
            writer.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        if self.mode == "keepalive":
            await self._keep_alive(reader, writer)
            return
        try:
            head = await _read_request(reader)
            if head.startswith(b"GET / "):  # the health probe: answer it properly
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
                writer.close()
                return
            self.requests += 1
            if self.mode == "hangup":
                writer.close()
            elif self.mode == "garbage":
                writer.write(b"\x00\x01 this is not HTTP at all \xff\xfe\r\n\r\n")
                await writer.drain()
                writer.close()
            elif self.mode == "reset":
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                )
                writer.write(b'{"partial": "' + b"x" * 1000)
                await writer.drain()
                sock = writer.get_extra_info("socket")
                # SO_LINGER 0: close with RST, the way a crashed upstream looks.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            elif self.mode == "slow":
                # Wait for the client to give up: EOF or a reset means it aborted the request.
                with contextlib.suppress(ConnectionError):
                    while await reader.read(65536):
                        pass
                self.aborted.set()
                writer.close()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass

    async def _keep_alive(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answered = False
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")  # GETs only: no body follows
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                answered = True
        except (asyncio.IncompleteReadError, ConnectionError):
            if answered:
                self.idle_closed.set()
        writer.close()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    """Read one whole request (head and body), so closing afterwards never resets the client
    while it is still sending."""
    head = await reader.readuntil(b"\r\n\r\n")
    lowered = head.lower()
    if b"content-length:" in lowered:
        length = int(lowered.split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
    elif b"transfer-encoding: chunked" in lowered:
        await reader.readuntil(b"0\r\n\r\n")
    return head
