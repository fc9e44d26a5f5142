"""The job store contract that every store plugin implements."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol, runtime_checkable

from .jobs import Job, JobStatus


class StoreError(Exception):
    """Base class of store failures the service turns into clear answers."""


class StoreUnavailable(StoreError):
    """The store cannot be reached now; the service answers 503 with ``Retry-After``."""


class StoreFull(StoreError):
    """The store holds as many jobs as it may; submits answer 503 until some expire."""


@dataclasses.dataclass(frozen=True)
class StoreContext:
    """What a store factory receives: the clock to judge expiry by, the bound on stored jobs,
    and the store's own options (``AsyncJobsConfig.store_options``)."""

    clock: Callable[[], float]
    max_jobs: int
    options: Mapping[str, Any]


@runtime_checkable
class JobStore(Protocol):
    """Where jobs live between submit and expiry.

    A store never sees a credential or a request body: a :class:`~bifrost_async.jobs.Job` holds
    neither. All methods may raise :class:`StoreUnavailable`; ``create`` may raise
    :class:`StoreFull`. ``bifrost_async.testing.StoreContract`` checks these rules.
    """

    async def start(self) -> None:
        """Open connections; called once before the first request."""

    async def close(self) -> None:
        """Release connections; called once at shutdown."""

    async def create(self, job: Job) -> None:
        """Store a new job. Its id is fresh; a store may refuse an id it already holds."""

    async def get(self, job_id: str) -> Job | None:
        """The job, or ``None`` if unknown or expired (``expires_at`` reached by the clock)."""

    async def update(self, job: Job, *, expect: Collection[JobStatus]) -> bool:
        """Replace the stored job with ``job`` only if the stored status is in ``expect`` and the
        move from it to ``job.status`` goes forward (:func:`~bifrost_async.jobs.may_move`).

        Atomic: of two racing updates with the same ``expect``, at most one succeeds. Returns
        ``False`` (and changes nothing) if the job is missing, expired, in another status, or
        the move would go backwards. When ``job.expires_at`` is set, the store forgets the job
        at that time.
        """


StoreFactory = Callable[[StoreContext], JobStore]
