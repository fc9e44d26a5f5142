"""A 202's ``Retry-After`` says what the service knows (issue 16), through a real uvicorn: half
the time the job still needs by its type's typical run time and its place in the queue; 1 while
nothing is known; never above ``retry_after_max``. The clock is the test's, so nothing is timed:
typical run times are put in the runner's table directly, except in the test that checks the
runner fills it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import build_stack

ALICE = {"Authorization": "Bearer alice-key"}
NOW = 1_800_000_000.0


def gated(path: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "test/gate"}
    if path == "chat/completions":
        body["messages"] = [{"role": "user", "content": "x"}]
    else:
        body["input"] = "x"
    return {"json": body, "headers": ALICE}


@pytest.fixture
async def stack(serve: Any) -> Any:
    """Two workers, polls answered at once, a clock that stands still."""
    return await build_stack(serve, concurrency=2, poll_pacing=0, retry_after_max=25, clock=lambda: NOW)


async def started(stack: Any, http: httpx.AsyncClient, path: str) -> tuple[httpx.Response, str]:
    submitted = await stack.submit(http, path, **gated(path))
    assert submitted.status_code == 202, submitted.text
    await stack.recorder.wait("started", submitted.json()["id"])
    return submitted, stack.url + submitted.headers["location"]


async def hint(http: httpx.AsyncClient, url: str) -> int:
    answer = await http.get(url, headers=ALICE)
    assert answer.status_code == 202
    value = answer.headers["retry-after"]
    assert value.isdigit() and int(value) >= 1
    return int(value)


async def test_nothing_known_yet_says_one(stack: Any, http: httpx.AsyncClient) -> None:
    submitted, url = await started(stack, http, "chat/completions")
    assert submitted.headers["retry-after"] == "1"
    assert await hint(http, url) == 1
    stack.app.state.gate.opened.set()


async def test_a_slow_type_gets_a_larger_hint_than_a_fast_one(stack: Any, http: httpx.AsyncClient) -> None:
    times = stack.middleware.runner.run_times
    times.observe("chat_completion", 40.0)
    times.observe("embedding", 0.3)
    _, slow = await started(stack, http, "chat/completions")
    _, fast = await started(stack, http, "embeddings")
    assert await hint(http, slow) == 20  # running since NOW: half of its typical 40 s
    assert await hint(http, fast) == 1
    # both workers busy: the next chat job waits one place (half a round of 40 s), then runs:
    # 60 s left, half of it 30, capped at 25
    queued = await stack.submit(http, "chat/completions", **gated("chat/completions"))
    assert queued.status_code == 202 and queued.headers["retry-after"] == "25"
    assert await hint(http, stack.url + queued.headers["location"]) == 25
    stack.app.state.gate.opened.set()
    done = await stack.finish(http, "chat/completions", queued, headers=ALICE)
    assert done.status_code == 200 and "retry-after" not in done.headers


async def test_the_runner_learns_each_types_run_time(stack: Any, http: httpx.AsyncClient) -> None:
    times = stack.middleware.runner.run_times
    assert times.typical("embedding") is None
    submitted = await stack.submit(http, "embeddings", json={"model": "test/ok", "input": "x"}, headers=ALICE)
    done = await stack.finish(http, "embeddings", submitted, headers=ALICE)
    assert done.status_code == 200
    learned = times.typical("embedding")
    assert learned is not None and learned >= 0
    assert times.typical("chat_completion") is None


async def test_retry_after_max_of_one_keeps_the_constant(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve, concurrency=1, poll_pacing=0, retry_after_max=1, clock=lambda: NOW)
    stack.middleware.runner.run_times.observe("chat_completion", 600.0)
    submitted, url = await started(stack, http, "chat/completions")
    assert submitted.headers["retry-after"] == "1" and await hint(http, url) == 1
    stack.app.state.gate.opened.set()
