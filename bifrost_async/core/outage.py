"""The runner's side of a store outage: keep writing until the store answers, leases first.

When the store stops answering, a running job keeps running; its result is kept and its terminal
write retried (capped exponential back-off with jitter) until the store answers again, bounded by
the result's own expiry, since a result stored after its ``expires_at`` could never be read. A
job that was about to start waits for the store the same way; queued jobs simply wait.

Ordering matters when the store comes back: every held job's lease may have run out meanwhile,
so the lease renewals go first and every other write of the runner waits until a whole round of
renewals has landed (:meth:`StoreOutage.write` waits on that gate). Other processes give the
worker a whole lease to do so (:class:`~bifrost_async.core.reachability.StoreReachability`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bifrost_async.core.reachability import StoreReachability
from bifrost_async.core.store import StoreError

_T = TypeVar("_T")

#: First retry delay in seconds; doubled per attempt up to the cap.
BACKOFF_BASE = 0.1
#: Longest pause between two attempts, in seconds (a third of the lease when that is shorter, so
#: a worker always renews well within the lease other processes wait before judging).
BACKOFF_CAP = 5.0


class GaveUp(StoreError):
    """The store did not answer before the write's deadline, or shutdown's grace was over."""


class StoreOutage:
    """Retry the runner's store writes through an outage, and hold them until leases are renewed.

    :meth:`lost` is called on every failed store call; the renewal loop
    (:meth:`next_round` between rounds) retries at once and then with back-off, and calls
    :meth:`renewed` once a whole round of renewals has landed, which lets the writes waiting in
    :meth:`write` go on.
    """

    def __init__(self, reachability: StoreReachability, lease_seconds: float) -> None:
        self.reachability = reachability
        self.lease_seconds = lease_seconds
        self._renewed = asyncio.Event()
        self._renewed.set()
        self._lost = asyncio.Event()

    @property
    def down(self) -> bool:
        """True from a failed store call until a round of lease renewals has landed."""
        return not self._renewed.is_set()

    def lost(self, exc: BaseException) -> None:
        """A store call failed: hold writes back and wake the renewal loop to probe."""
        self.reachability.failed(str(exc))
        self._renewed.clear()
        self._lost.set()

    def renewed(self, *, answered: bool) -> None:
        """A whole round of lease renewals landed: writes may go on. ``answered``: the round
        made a store call (an empty round proves nothing about the store)."""
        if answered:
            self.reachability.answered()
        self._renewed.set()

    def delay(self, attempt: int) -> float:
        """Seconds before retry ``attempt`` (0-based): exponential, capped, with jitter (half to
        all of it), so many processes coming back together do not retry in step."""
        cap = max(0.01, min(BACKOFF_CAP, self.lease_seconds / 3))
        step = min(cap, BACKOFF_BASE * 2.0 ** min(attempt, 30))
        return step * (0.5 + random.random() / 2)  # jitter, not a secret

    async def next_round(self, failures: int) -> None:
        """Until the next round of lease renewals: a third of a lease, or at once when a store
        call failed meanwhile; while the store is down, the back-off after ``failures``."""
        if self.down:
            if failures:
                await asyncio.sleep(self.delay(failures - 1))
            return
        self._lost.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.lease_seconds / 3):
                await self._lost.wait()

    async def write(
        self,
        attempt: Callable[[], Awaitable[_T]],
        *,
        until: float | None,
        clock: Callable[[], float],
        give_up: Callable[[], bool],
    ) -> _T:
        """``await attempt()`` once the leases are renewed; retry a :class:`StoreError` with
        back-off until it succeeds. Raises :class:`GaveUp` once ``clock()`` reaches ``until``
        (``None``: no deadline) or ``give_up()`` is true (shutdown's grace is over), after
        at least one attempt."""
        failures = 0
        while True:
            if self.down and not give_up():
                # the renewal loop opens the gate; look again after a back-off step meanwhile
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.delay(failures)):
                        await self._renewed.wait()
                if self.down and (until is None or clock() < until):
                    continue
            try:
                result = await attempt()
            except StoreError as exc:
                self.lost(exc)
                if give_up() or (until is not None and clock() >= until):
                    raise GaveUp(str(exc)) from exc
                failures += 1
                await asyncio.sleep(self.delay(failures - 1))
                continue
            return result
