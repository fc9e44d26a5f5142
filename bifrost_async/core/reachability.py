"""Whether the job store answers, as one process sees it, and when leases may be judged again.

A job's lease says its worker is alive: the worker renews it every third of ``lease_seconds``,
and a poll or a store's sweep fails the job as ``worker_lost`` once it has run out. During a
store outage nobody can renew anything, so every lease runs out, live workers' too. A process
that judged leases the moment the store answered again would fail jobs whose workers are alive
and about to renew (or hold the result already). So a process judges leases only once it has
seen the store answer for a whole lease since its last failure: by then every live worker has
had a full lease (three renewal rounds) to renew, and the runner renews *before* it writes
anything else (:class:`~bifrost_async.core.outage.StoreOutage`).

The same object says it once in the logs: one warning when the store stops answering
(``store.unreachable``), one info when it is back (``store.reachable``, with the outage's
length), whatever the number of calls that failed in between.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)


class StoreReachability:
    """This process's view of the store: up or down, and since when.

    Every part of the process that calls the store tells it what happened (:meth:`failed`,
    :meth:`answered`): the runner's writes and lease renewals, polls and submits, a store's own
    sweep (through :attr:`~bifrost_async.core.store.StoreHost.reachability`). Both calls are a
    comparison when nothing changes, so they are cheap enough for every store call.

    ``lease_seconds`` of 0 never holds judging back (a host for a store no middleware attached).
    A process starts as if the store had answered forever: an outage it saw nothing of (it made
    no call meanwhile) cannot hold it back; see the README's operating notes for that window.
    """

    def __init__(self, clock: Callable[[], float], lease_seconds: float) -> None:
        self._clock = clock
        self.lease_seconds = lease_seconds
        #: When the store last stopped answering (by ``clock``); ``None`` while it answers.
        self._down_since: float | None = None
        #: Since when the store has answered without a failure seen here.
        self._up_since = float("-inf")

    @property
    def reachable(self) -> bool:
        """False from a failure until the next answer."""
        return self._down_since is None

    def failed(self, error: str = "") -> None:
        """A store call failed because the store is unavailable; the first failure of an
        outage logs ``store.unreachable`` (a warning), later ones nothing."""
        if self._down_since is None:
            self._down_since = self._clock()
            log.warning("store.unreachable", error=error[:200])

    def answered(self) -> None:
        """A store call succeeded; the first success after an outage logs ``store.reachable``
        (an info, with ``outage_seconds``) and starts the wait before leases are judged."""
        if self._down_since is not None:
            now = self._clock()
            log.info("store.reachable", outage_seconds=round(now - self._down_since, 3))
            self._down_since = None
            self._up_since = now

    def restarted(self) -> None:
        """The store says it restarted although no call seen here failed (a shared store's
        sweep notices a new server): leases wait a whole lease from now. Logs ``store.restarted``
        (an info) unless an outage seen here ended less than a lease ago (that one was logged);
        does nothing while an outage is known (``answered`` will end it)."""
        if self._down_since is None:
            now = self._clock()
            if now - self._up_since >= self.lease_seconds:  # else an outage seen here just ended
                log.info("store.restarted")
            self._up_since = now

    def may_judge_leases(self) -> bool:
        """True when a lease that ran out means its worker is gone: the store answers now and
        has answered for at least ``lease_seconds`` since its last failure seen here."""
        return self._down_since is None and self._clock() - self._up_since >= self.lease_seconds
