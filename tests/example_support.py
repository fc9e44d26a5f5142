"""Run the bundled example scripts as real processes (``start_example`` fixture)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from .proxy_support import ROOT

EXAMPLES = ROOT / "examples"


class Example:
    """One example script running as a real process, its stdout read line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line_with(self, text: str, deadline: float = 60) -> str:
        """The first stdout line containing ``text`` (the deadline only bounds a broken run)."""
        assert self.process.stdout is not None
        async with asyncio.timeout(deadline):
            while True:
                line = (await self.process.stdout.readline()).decode()
                assert line, f"the example exited ({await self.process.wait()}) before printing {text!r}"
                if text in line:
                    return line


#: ``await start(script, *args, env=...)``: run an example script.
Start = Callable[..., Awaitable[Example]]


@pytest.fixture
async def start_example() -> AsyncIterator[Start]:
    started: list[asyncio.subprocess.Process] = []

    async def run(script: str, *args: str, env: dict[str, str] | None = None) -> Example:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLES / script),
            *args,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: teardown reaches its children too
        )
        started.append(process)
        return Example(process)

    yield run
    for process in started:
        await reap(process)


async def reap(process: asyncio.subprocess.Process) -> None:
    """Kill ``process`` and whatever it started, then read its pipes to the end.

    Draining matters: a pipe left open keeps the subprocess transport alive past the test's event
    loop, and its ``__del__`` then fails a later, unrelated test with "Event loop is closed".
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    async with asyncio.timeout(30):  # bounds a broken run only
        await process.communicate()


def bound_url(line: str) -> str:
    return line.split("listening on ")[1].split()[0]
