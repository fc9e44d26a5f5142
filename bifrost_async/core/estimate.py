"""``Retry-After`` from what this process knows: typical run time per request type, queue place.

Issue 16: a 202 used to say ``Retry-After: 1`` whatever the job. Here the hint comes from the
time the job probably still needs:

- **queued** at place ``p`` (1 = next) behind ``c`` workers: ``p / c * T + T`` (the runs ahead
  of it, then its own), where ``T`` is the type's typical run time;
- **queued, place unknown** (a shared queue that only Redis can place, or a job queued in another
  process): ``T``;
- **running**: ``T`` minus the time it has run already;

and the hint is :data:`SHARE` (half) of that, in whole seconds (RFC 9110 delay-seconds), rounded
up and clamped to ``[floor, cap]`` (``retry_after`` and ``retry_after_max``); the floor while no
run of the type has ended in this process. Half, not all: a client that honours the hint comes
back at half the time left, then at half of what is left then, and so on, so it learns of the
end at most about half the estimate's error late, in a few polls. The whole estimate saved
another third of the polls but let a client learn of a run that beat its type's average up to a
whole run time late (``bench/retry_after.py``: 2.3-3.0 polls per job and up to 3-6 s late,
against 3.9-4.9 polls and at most ~1 s late with half, and 6.8-8.9 polls with the constant 1 s).

``T`` is an exponentially weighted moving average of the run times the runner measures (every
run that ended with an outcome, failures included: they held a worker as long), one per request
type, kept per process for at most :data:`MAX_TYPES` types. Reading it costs a dictionary
look-up and a few float operations, and no store or queue round trip: a queue that cannot place
a job without one (the Redis queue) says ``None`` and the hint does without.
"""

from __future__ import annotations

from collections.abc import Callable

from bifrost_async.core.jobs import Job, JobStatus

#: Request types whose typical run time is kept; runs of further types are not counted (the
#: route table bounds the types already: this only bounds the table against odd configurations).
MAX_TYPES = 256
#: Weight of the newest run in the moving average: about the last ten runs count.
ALPHA = 0.2
#: The hint is this share of the estimated time left (see the module docstring).
SHARE = 0.5
#: The largest ``retry_after_max`` (seconds) the options accept: a hint of more than a day is a
#: typo, not an estimate, and a client that honours it would wait it out.
MAX_HINT = 86400


class RunTimes:
    """Typical run time (seconds) per request type: an EWMA of measured runs, per process."""

    __slots__ = ("_typical", "alpha", "max_types")

    def __init__(self, *, alpha: float = ALPHA, max_types: int = MAX_TYPES) -> None:
        self._typical: dict[str, float] = {}
        self.alpha = alpha
        self.max_types = max_types

    def observe(self, request_type: str, seconds: float) -> None:
        """Count one run of ``request_type`` that took ``seconds``; the first run seeds it."""
        if seconds < 0:
            return
        typical = self._typical.get(request_type)
        if typical is None:
            if len(self._typical) < self.max_types:
                self._typical[request_type] = seconds
            return
        self._typical[request_type] = typical + self.alpha * (seconds - typical)

    def typical(self, request_type: str) -> float | None:
        """The type's typical run time in seconds; ``None`` before any run of it ended here."""
        return self._typical.get(request_type)


class RetryHints:
    """Whole-second ``Retry-After`` values for unfinished jobs (the module docstring's rule:
    half the estimated time left, clamped).

    ``position`` is the queue's synchronous place of a job (``None``: not known here without a
    round trip), ``concurrency`` this process's workers, ``clock`` the jobs' clock (epoch
    seconds, as ``started_at``)."""

    __slots__ = ("cap", "clock", "concurrency", "floor", "position", "run_times")

    def __init__(
        self,
        run_times: RunTimes,
        position: Callable[[str], int | None],
        *,
        concurrency: int,
        clock: Callable[[], float],
        floor: int = 1,
        cap: int = 30,
    ) -> None:
        if not 1 <= floor <= cap:
            raise ValueError(f"Retry-After bounds must satisfy 1 <= floor <= cap, got {floor}, {cap}")
        self.run_times = run_times
        self.position = position
        self.concurrency = max(1, concurrency)
        self.clock = clock
        self.floor = floor
        self.cap = cap

    def seconds(self, job: Job) -> int:
        """The hint for ``job`` (unfinished), a whole number in ``[floor, cap]``."""
        typical = self.run_times.typical(job.request_type)
        if typical is None:
            return self.floor
        if job.status is JobStatus.PROCESSING:
            left = typical - (self.clock() - (job.started_at or self.clock()))
        else:
            place = self.position(job.id)
            left = typical if place is None else place / self.concurrency * typical + typical
        left *= SHARE
        whole = int(left) + (left > int(left))  # rounded up: never invites an early poll
        return self.floor if whole < self.floor else self.cap if whole > self.cap else whole

    def header(self, job: Job) -> bytes:
        """:meth:`seconds` as the header's bytes."""
        return str(self.seconds(job)).encode()
