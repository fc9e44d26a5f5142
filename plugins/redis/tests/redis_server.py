"""Test helpers: a real ``redis-server`` on an ephemeral port, bounded waiting, and everything a
Redis holds as bytes (to prove what is not in it)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REDIS_SERVER = shutil.which("redis-server")
START_DEADLINE = 15.0
#: Fresh ports tried when the picked one was taken before redis-server bound it.
PORT_ATTEMPTS = 5


def free_port() -> int:
    """A port nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], deadline: float, what: str, step: float = 0.02) -> None:
    """Poll ``condition`` until it holds; fail the test after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:g} s waiting for {what}")
        time.sleep(step)


def serving_pid(port: int) -> int | None:
    """The pid of the redis-server answering on ``port`` (``INFO server``), or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"INFO server\r\n")
            reply = b""
            while (found := re.search(rb"process_id:(\d+)\r\n", reply)) is None:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                reply += chunk
    except OSError:  # nothing listens, or something that is not Redis and does not answer
        return None
    return int(found.group(1))


class RedisServer:
    """A ``redis-server`` subprocess; it can be stopped (SIGTERM) and started again on the same
    port and data directory. Without ``persistent`` a restart loses its data, as a real one
    without persistence does; with it the append-only file (fsync on every write) brings every
    acknowledged write back.

    The port is picked free but only bound by redis-server later, so something else may take it
    in between: then the first :meth:`start` moves to a fresh port, as long as nobody has read
    :attr:`url` yet. Once the URL is out (or the server has run), the port is kept, and losing
    it on a restart is an error."""

    def __init__(self, workdir: Path, port: int | None = None, *, persistent: bool = False) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None
        self._port_fixed = port is not None

    @property
    def url(self) -> str:
        self._port_fixed = True  # someone may connect to this port from now on: it must not move
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if REDIS_SERVER is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(PORT_ATTEMPTS):
            if self._start_once():
                self._port_fixed = True
                return
            if self._port_fixed:
                break
            self.port = free_port()
        raise RuntimeError(f"redis-server could not listen on port {self.port}; see {self.workdir}")

    def _start_once(self) -> bool:
        """Start redis-server on :attr:`port`: True once it answers there, False if the port is
        taken (by anything, even another redis-server); any other failure raises."""
        command = [REDIS_SERVER or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        aof = (
            ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        )
        command += ["--save", "", *aof, "--dir", str(self.workdir)]
        log = self.workdir / "redis.log"
        with log.open("ab") as logfile:
            logged = logfile.tell()
            self.process = process = subprocess.Popen(command, stdout=logfile, stderr=subprocess.STDOUT)
        wait_until(
            lambda: process.poll() is not None or serving_pid(self.port) == process.pid,
            START_DEADLINE,
            f"redis-server on port {self.port}",
        )
        if process.poll() is None:
            return True
        self.process = None
        with log.open("rb") as logfile:
            logfile.seek(logged)
            if b"Address already in use" in logfile.read():
                return False
        raise RuntimeError(f"redis-server exited with {process.returncode}; see {log}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            assert sock.recv(16).startswith(b"+OK")


async def redis_contents(raw: Any) -> bytes:
    """Every key and every value in the Redis ``raw`` (a ``redis.asyncio.Redis``) run together as
    bytes: strings, lists, hashes (fields and values), streams, sorted sets and sets. A test
    asserts that a credential or a body is not among them."""
    dump = b""
    async for key in raw.scan_iter():
        dump += key
        kind = (await raw.type(key)).decode()
        if kind == "string":
            dump += await raw.get(key) or b""
        elif kind == "list":
            dump += b"".join(await raw.lrange(key, 0, -1))
        elif kind == "hash":
            dump += b"".join(k + v for k, v in (await raw.hgetall(key)).items())
        elif kind == "stream":
            dump += repr(await raw.xrange(key)).encode()
        elif kind == "zset":
            dump += b"".join(await raw.zrange(key, 0, -1))
        elif kind == "set":
            dump += b"".join(await raw.smembers(key))
    return dump
