"""The job store contract that every store plugin implements."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
import pathlib
import re
import typing
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from typing import Any, Protocol, TypeVar, runtime_checkable

from bifrost_async.core.jobs import Job, JobStatus, is_job_id
from bifrost_async.core.reachability import StoreReachability as StoreReachability

_T = TypeVar("_T")

#: What ``repr`` writes for a finite float (``1764581558.123``, ``1e-05``, ``1.5e+16``).
_FLOAT_REPR = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:e[+-][0-9]+)?")


class StoreError(Exception):
    """Base class of store failures the service turns into clear answers."""


class StoreUnavailable(StoreError):
    """The store cannot be reached now; the service answers 503 with ``Retry-After``."""


class StoreFull(StoreError):
    """The store holds as many jobs as it may; submits answer 503 until some expire."""


class OwnerShareFull(StoreError):
    """The job's owner holds its share of the store (``StoreContext.max_owner_jobs`` live jobs);
    the service answers that caller 429 while everybody else's submits go on."""


@dataclasses.dataclass(frozen=True)
class StoreContext:
    """What a store factory receives (docs/STORES.md). The factory is called once while the
    middleware is built, to check the options, and again at startup: it must do no I/O."""

    #: The clock to judge expiry by (``expires_at``, claim lapses); never compare with wall time.
    clock: Callable[[], float]
    #: The bound on live jobs: ``create`` raises :class:`StoreFull` beyond it; 0 means no bound.
    max_jobs: int
    #: The store's own options (``AsyncJobsConfig.store_options``, ``--store-option``, env, TOML):
    #: often strings; parse them with :func:`parse_store_options`.
    options: Mapping[str, Any]
    #: Live jobs one owner may hold (:class:`OwnerShareFull` beyond it); 0: no share.
    max_owner_jobs: int = 0


@runtime_checkable
class JobStore(Protocol):
    """Where jobs live between submit and expiry.

    A store never sees a credential or a request body: a :class:`~bifrost_async.core.jobs.Job` holds
    neither. All methods may raise :class:`StoreUnavailable`; ``create`` may raise
    :class:`StoreFull`. ``bifrost_async.testing.StoreContract`` checks these rules
    (``SharedStoreContract`` for a store registered ``shared=True``); docs/STORES.md explains them.

    **Every write is idempotent**: repeating a write whose reply was lost (a network store's
    client retries a command when the connection drops after the command was sent) reports the
    same success as the first attempt. :meth:`create` and :meth:`update` of a record that is
    already stored, exactly, succeed; :meth:`claim_idempotency_key` for the job that already holds
    the claim grants it again; :meth:`delete` of a job already gone is ``False`` with nothing left
    to undo. Otherwise a retry sees its own write and reports failure, and the runner abandons a
    job that is in fact running. Records carry their writer's timestamps, so in practice two
    different writers never write the very same record.
    """

    async def start(self) -> None:
        """Open connections; called once before the first request."""

    async def close(self) -> None:
        """Release connections; called once at shutdown."""

    async def create(self, job: Job) -> None:
        """Store a new job. Its id is fresh: an id the store already holds with another record
        raises ``ValueError`` and changes nothing, while storing the very same record again
        succeeds (idempotent).

        Raises :class:`StoreFull` at the bound (``max_jobs`` live jobs; 0: no bound) and
        :class:`OwnerShareFull` when ``job.owner`` (``""``, anonymous callers, is one owner too)
        already holds ``max_owner_jobs`` live jobs (when that is above 0). Both checks are atomic
        with the write, across every process sharing the store: racing creates never pass either
        bound.
        """

    async def owner_jobs(self, owner: str) -> int:
        """How many live jobs (any type, any status) ``owner`` holds; exact at least up to the
        share, so the service can refuse a submit over its share before reading its body."""

    async def get(self, job_id: str) -> Job | None:
        """The job, or ``None`` if unknown or expired (``expires_at`` reached by the clock)."""

    async def update(self, job: Job, *, expect: Collection[JobStatus]) -> bool:
        """Replace the stored job with ``job`` only if the stored status is in ``expect`` and the
        move from it to ``job.status`` goes forward (:func:`~bifrost_async.core.jobs.may_move`).

        Atomic: of two racing updates with the same ``expect``, at most one succeeds. Returns
        ``False`` (and changes nothing) if the job is missing, expired, in another status, or
        the move would go backwards, except that a live stored record equal to ``job`` is
        success whatever ``expect`` says: the write being repeated has landed already. When
        ``job.expires_at`` is set, the store forgets the job at that time.

        A successful update to a terminal status notifies :meth:`wait` callers in every process
        sharing the store (that notification is also how a runner learns that a job it runs was
        cancelled elsewhere). If ``job.idempotency_claim`` is set, the claim expires with the job.
        """

    # -- extensions (docs/EXTENSIONS.md): long-poll, cancel/delete, idempotency, list ----------

    async def wait(self, job_id: str, timeout: float) -> Job | None:  # noqa: ASYNC109 - returns, never raises, at the timeout
        """Wait until the job is terminal or deleted, or ``timeout`` seconds have passed.

        Returns the job as stored at that moment (terminal, or still unfinished after the
        timeout), or ``None`` if it is unknown, expired or deleted. Returns at once when the job
        is already terminal or unknown. Must be woken by the store's own notification of a
        terminal :meth:`update` or a :meth:`delete`, made in this process or (for a shared store)
        any other, not by polling; a spurious wake-up is handled inside (the store re-reads the
        job and goes on waiting until the deadline).
        """

    async def delete(self, job_id: str) -> bool:
        """Remove the job whatever its status, with its idempotency claim, and wake its waiters.

        Returns ``True`` if a live job was removed, ``False`` if it was unknown or expired
        (including a repeated delete: the job is gone either way, which is all a caller needs).
        Atomic: a racing :meth:`update` either lands before (and is removed) or finds no job.
        """

    async def claim_idempotency_key(
        self, claim: str, fingerprint: str, job_id: str, ttl: float
    ) -> tuple[str | None, bool]:
        """Claim the idempotency key ``claim`` (an opaque digest of owner and key, made by the
        service) for the job ``job_id`` that is about to be created.

        Atomic (``SET NX``): of two racing claims, exactly one gets ``(None, True)``. When a live
        claim exists, returns ``(its job id, its fingerprint == fingerprint)`` and changes
        nothing, except that a claim already held for ``job_id`` itself is granted again as
        ``(None, True)`` (a repeated claim; job ids are fresh, so nobody else holds one for
        it). A claim lives while its job lives: :meth:`create` of a job whose
        ``idempotency_claim`` is ``claim`` makes it permanent, the job's expiry expires it,
        :meth:`delete` removes it; a claim whose job is never created lapses after ``ttl``
        seconds.
        """

    async def find_idempotency_key(self, claim: str) -> tuple[str, str] | None:
        """The live claim ``claim`` as ``(job id, fingerprint)``, or ``None``; changes nothing.
        Lets the service answer a repeat before it spools the body (liveness as in
        :meth:`claim_idempotency_key`)."""

    async def release_idempotency_key(self, claim: str, job_id: str) -> None:
        """Drop the claim ``claim`` if ``job_id`` holds it and that job was never created: the
        submit that claimed it was refused, so a retry with the same key must be free at once
        (not 409 until the claim lapses). A no-op otherwise."""

    async def list_jobs(
        self,
        owner: str,
        request_type: str,
        *,
        status: JobStatus | None = None,
        cursor: str | None = None,
        limit: int = 20,
    ) -> tuple[list[Job], str | None]:
        """The live jobs of ``owner`` (compared exactly) and ``request_type``, newest first
        (``created_at``, then ``id``, descending), optionally only those in ``status``.

        ``cursor`` is ``None`` for the first page or a ``next_cursor`` this store returned;
        returns up to ``limit`` jobs and the cursor of the next page (``None`` on the last). A
        store may bound one call's work: then a page may be short, even empty, with a cursor
        (:func:`encode_position` makes one after the last entry it examined).
        Raises :class:`ValueError` for a cursor it did not make. Jobs removed or added between
        pages never make a page repeat or skip a job that was listed before.
        """


StoreFactory = Callable[[StoreContext], JobStore]


@dataclasses.dataclass(frozen=True)
class StoreHost:
    """What a started middleware hands a store that has an ``attach(host)`` method: the public
    seam for stores that sweep orphaned jobs themselves (a job whose worker died stays
    ``processing`` until a poll sees its lease has run out; a sweep ends it without a poll).

    A sweeping store, every ``N`` seconds, reads the unfinished jobs whose ``lease_expires_at`` is
    past by its clock, skips those for which ``holds(job_id)`` is true (this process runs them: a
    missed lease renewal does not make them orphans), and calls ``await fail_orphan(job)`` for the
    rest. ``fail_orphan`` ends the job as a poll would (status 500, code ``worker_lost``, via the
    store's own compare-and-set :meth:`JobStore.update`, so of several sweeping processes exactly
    one ends each job), tells the ``job_finished`` observers exactly once, and returns the ended
    job if this call ended it (``None`` if another process or a poll did first). It raises
    :class:`StoreUnavailable` when the store is down.

    A lease that ran out while the store itself was unreachable says nothing about its worker
    (nobody could renew it). The middleware's ``fail_orphan`` therefore ends nothing (returns
    ``None``) until this process has seen the store answer for a whole lease since its last
    failure. A sweep helps it see: it reports each round to :attr:`reachability` (``failed()``
    when the store is unavailable, ``answered()`` when it answered; ``restarted()`` when it can
    tell the server restarted) and may skip a round while ``may_judge_leases()`` is false.

    ``attach`` is called once, after the store started and before the first request; a store
    without the method is simply not told (its orphans end on their next poll).
    """

    holds: Callable[[str], bool]
    fail_orphan: Callable[[Job], Awaitable[Job | None]]
    #: The middleware's view of the store (shared with its runner and polls); ``None`` (a host
    #: built by an older caller): judge leases at once, as before.
    reachability: StoreReachability | None = None

    @classmethod
    def unattached(cls, store: JobStore, clock: Callable[[], float]) -> StoreHost:
        """A host for a store no middleware attached (a sweep run by a test or an operator's
        script): holds nothing, ends orphans with :func:`fail_orphan` and tells nobody."""

        async def fail(job: Job) -> Job | None:
            return await fail_orphan(store, job, clock())

        return cls(holds=lambda job_id: False, fail_orphan=fail)


async def fail_orphan(store: JobStore, job: Job, now: float) -> Job | None:
    """End ``job`` (unfinished, its lease run out at ``now``) as ``worker_lost`` with the
    store's compare-and-set; the ended job if this call ended it, ``None`` if somebody else did
    (or it moved on). Tells no observer: the middleware's ``StoreHost.fail_orphan`` does that."""
    from bifrost_async.core.finish import finish_job  # finish imports this module

    return await finish_job(
        store, job, worker_lost_outcome(job), now=now, expect=job.status, on_finished=_nobody
    )


def _nobody(job: Job) -> None:
    """``on_finished`` of :func:`fail_orphan`: it tells no observer."""


class RegisterStore(Protocol):
    """The ``register`` callable that the ``register_stores`` hook receives."""

    def __call__(self, name: str, factory: StoreFactory, *, shared: bool = False) -> None:
        """Register ``factory`` as the store ``name``; ``shared``: one set of jobs for every
        process pointed at the same place (required for ``serve --workers`` above 1)."""


def list_key(job: Job) -> tuple[float, str]:
    """The order of :meth:`JobStore.list_jobs` (sorted descending by this)."""
    return (job.created_at, job.id)


def encode_cursor(job: Job) -> str:
    """An opaque cursor that resumes a listing after ``job``."""
    return encode_position(job.created_at, job.id)


def encode_position(created_at: float, job_id: str) -> str:
    """An opaque cursor that resumes a listing after the position ``(created_at, job_id)``, for a
    store that stops a scan before it fills a page (the next page starts after what it read)."""
    raw = f"{created_at!r}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The ``(created_at, id)`` a cursor resumes after; :class:`ValueError` if malformed."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, sep, job_id = raw.partition("|")
        if not sep or not job_id:
            raise ValueError("invalid cursor")
        # repr() of a finite float only: float() alone would take "nan", " 1", "1_0", "٣"
        if not _FLOAT_REPR.fullmatch(created):
            raise ValueError("invalid cursor")
        value = float(created)
        if not math.isfinite(value) or not is_job_id(job_id):
            raise ValueError("invalid cursor")
        return value, job_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("invalid cursor") from None


def page_of(
    jobs: Iterable[Job],
    owner: str,
    request_type: str,
    *,
    status: JobStatus | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[Job], str | None]:
    """One page of :meth:`JobStore.list_jobs` from live ``jobs`` held in memory: the filtering,
    order and cursor rules in one place for stores that keep jobs in the process. The page holds
    the given objects; copy them before handing them out."""
    after = decode_cursor(cursor) if cursor is not None else None
    matching = [
        job
        for job in jobs
        if job.owner == owner
        and job.request_type == request_type
        and (status is None or job.status is status)
        and (after is None or list_key(job) < after)
    ]
    matching.sort(key=list_key, reverse=True)
    page = matching[:limit]
    return page, encode_cursor(page[-1]) if len(matching) > limit and page else None


def parse_store_options(schema: type[_T], options: Mapping[str, Any], *, store: str) -> _T:
    """Build a store's option schema (a dataclass) from ``StoreContext.options``.

    Values may arrive as strings (``--store-option busy_timeout=5``, the environment, TOML), so
    each is converted to its field's type: ``int``, ``float``, ``bool`` (``true``/``false``,
    ``1``/``0``, ``yes``/``no``, ``on``/``off``), ``str``, ``pathlib.Path``, or any of them
    ``| None``. An unknown key, or a value that does not convert, raises :class:`ValueError`
    naming the store and the option; then ``schema.validate()`` runs if it exists (range checks).
    The middleware calls store factories once while it is built, so these errors stop a server
    before it starts, in one line.
    """
    fields = {field.name: field for field in dataclasses.fields(schema)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown {store} store option(s): {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(schema)
    values = {name: _convert_option(store, name, raw, hints[name]) for name, raw in options.items()}
    built = schema(**values)
    validate = getattr(built, "validate", None)
    if callable(validate):
        validate()
    return built


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _convert_option(store: str, name: str, raw: Any, hint: Any) -> Any:
    kinds = [kind for kind in typing.get_args(hint) if kind is not type(None)] or [hint]
    optional = type(None) in typing.get_args(hint)
    if raw is None or (optional and isinstance(raw, str) and raw.strip().lower() in ("", "none")):
        if optional:
            return None
        raise ValueError(f"{store} store option {name} must not be empty")
    kind = kinds[0]
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        word = str(raw).strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise ValueError(f"{store} store option {name} must be true or false, got {raw!r}")
    if kind in (int, float):
        if isinstance(raw, bool):
            raise ValueError(f"{store} store option {name} must be a number, got {raw!r}")
        try:
            number = kind(raw)
        except (TypeError, ValueError):
            raise ValueError(f"{store} store option {name} must be a number, got {raw!r}") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError(f"{store} store option {name} must be a finite number, got {raw!r}")
        return number
    if kind is pathlib.Path:
        if not isinstance(raw, str | pathlib.PurePath) or not str(raw):
            raise ValueError(f"{store} store option {name} must be a path, got {raw!r}")
        return pathlib.Path(raw)
    if not isinstance(raw, str):
        raise ValueError(f"{store} store option {name} must be a string, got {type(raw).__name__}")
    return raw


# What store plugins need beyond the protocol, importable from this one public module: the
# forward-only status rule, the in-process waiter registry and its wait loop, and the outcome a
# store gives a job whose worker's lease ran out.
from bifrost_async.core.jobs import may_move as may_move  # noqa: E402
from bifrost_async.core.outcome import WORKER_LOST_MESSAGE as WORKER_LOST_MESSAGE  # noqa: E402
from bifrost_async.core.outcome import worker_lost as worker_lost  # noqa: E402
from bifrost_async.core.outcome import worker_lost_outcome  # noqa: E402
from bifrost_async.core.waiters import Waiters as Waiters  # noqa: E402
from bifrost_async.core.waiters import wait_for_job as wait_for_job  # noqa: E402
