"""``unless_disconnected``: a long-poll's wait runs in the request's own task and ends when its
client leaves; only that ends it as ``ClientDisconnected``, any other cancellation stays one.
Direct calls, no HTTP (the HTTP case is in test_extensions); every wait is on an event."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bifrost_async.core.capture import ClientDisconnected
from bifrost_async.http.extensions import unless_disconnected


class Client:
    """A ``receive`` that reports ``http.disconnect`` once :attr:`leave` is set."""

    def __init__(self) -> None:
        self.leave = asyncio.Event()
        self.reading = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        self.reading.set()
        await self.leave.wait()
        return {"type": "http.disconnect"}


async def test_the_awaited_result_comes_back_and_the_watcher_ends() -> None:
    client = Client()
    done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def wait() -> str:
        return await done

    call = asyncio.create_task(unless_disconnected(wait(), client.receive))
    await client.reading.wait()
    done.set_result("ended")
    assert await asyncio.wait_for(call, 10) == "ended"
    watchers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    await asyncio.wait_for(asyncio.gather(*watchers, return_exceptions=True), 10)
    assert all(task.cancelled() for task in watchers)  # the watcher was cancelled, not left reading
    assert not client.leave.is_set()


async def test_a_client_that_leaves_ends_the_wait_as_client_disconnected() -> None:
    client = Client()
    unwound = asyncio.Event()

    async def wait() -> str:
        try:
            await asyncio.Event().wait()  # never set: only the disconnect ends this
        finally:
            unwound.set()
        return "never"

    call = asyncio.create_task(unless_disconnected(wait(), client.receive))
    await client.reading.wait()
    client.leave.set()
    with pytest.raises(ClientDisconnected):
        await asyncio.wait_for(call, 10)
    assert unwound.is_set()  # the wait itself was cancelled (its waiter dropped), not abandoned
    assert not call.cancelled()


async def test_cancelling_the_request_stays_a_cancellation() -> None:
    client = Client()

    async def wait() -> str:
        await asyncio.Event().wait()
        return "never"

    call = asyncio.create_task(unless_disconnected(wait(), client.receive))
    await client.reading.wait()
    call.cancel()  # e.g. the server shutting down: not the client leaving
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(call, 10)
    assert call.cancelled()
