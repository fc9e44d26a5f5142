"""Run the bundled example scripts as real processes (``start_example`` fixture)."""

from __future__ import annotations

import asyncio
import os
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
        )
        started.append(process)
        return Example(process)

    yield run
    for process in started:
        if process.returncode is None:
            process.kill()
            await process.wait()


def bound_url(line: str) -> str:
    return line.split("listening on ")[1].split()[0]
