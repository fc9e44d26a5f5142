"""Checks the kit's rule groups share (internal): one winner among racing claims, and a ``wait``
given time to park, then held to the wake-up deadline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ..store import JobStore


def _one_claim_won(ids: list[str], answers: list[tuple[str | None, bool]]) -> None:
    winners = [i for i, answer in zip(ids, answers, strict=True) if answer == (None, True)]
    assert len(winners) == 1, (
        f"rule: claims are atomic: {len(winners)} of {len(ids)} racing claims won, not 1"
    )
    assert all(answer in ((None, True), (winners[0], True)) for answer in answers), (
        f"rule: a losing claim answers the winner's job id, got {answers!r}"
    )


async def _let_park(store: JobStore, job_id: str) -> None:
    """Give a just-created ``wait`` task the loop, and a few round trips of ``store``, to read the
    job and park before the test writes: then only a notification can end it in time. (Never a
    sleep for correctness: a wait that parks later still passes, the check is merely weaker.)"""
    for _ in range(3):
        await asyncio.sleep(0)
        await store.get(job_id)


async def _within(awaitable: Any, deadline: float, cause: str) -> Any:
    """``awaitable``'s result, failing the test with the wake-up rule if it takes longer than
    ``deadline`` seconds (the store never woke its waiter for ``cause``)."""
    try:
        return await asyncio.wait_for(awaitable, deadline)
    except TimeoutError:
        pytest.fail(
            f"rule: wake-ups: wait did not return within {deadline} s of {cause}; a store must notify "
            "waiters (in every process it is shared by) of terminal updates and deletes"
        )
