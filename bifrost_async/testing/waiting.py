"""Waiting in tests on a condition the event loop will make true, without sleeping on time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:  # noqa: ASYNC109
    """Yield to the event loop, one step at a time, until ``condition()`` holds.

    For states that other tasks on the same loop bring about (a waiter registered, a task
    parked): the test waits exactly as long as it takes, however slow the machine. ``timeout``
    (seconds) only bounds a hang; reaching it raises ``TimeoutError``.
    """
    async with asyncio.timeout(timeout):
        while True:
            if condition():
                return
            # one loop step: the other tasks run (an Event would need every caller to set it)
            await asyncio.sleep(0)
