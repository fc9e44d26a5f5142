"""The kit's clock: time that moves only when a test says so."""

from __future__ import annotations

import time


class FakeClock:
    """A clock for tests: starts at a real-looking epoch time and moves only when told."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
