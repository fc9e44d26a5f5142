"""Configuration of the async job layer: one frozen dataclass, validated when built."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from bifrost_async.core.estimate import MAX_HINT
from bifrost_async.service.credentials import AcceptedKeys
from bifrost_async.service.forwarding import parse_trusted_proxies
from bifrost_async.service.routes import DEFAULT_ROUTES, RouteSpec, RouteTable

MB = 1024 * 1024


def parse_type_counts(text: str) -> dict[str, int]:
    """``transcription=1,embedding=5`` as ``{"transcription": 1, "embedding": 5}``; a
    ``ValueError`` names the entry that is not ``TYPE=N``."""
    counts: dict[str, int] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = entry.partition("=")
        if not sep or not name.strip() or not value.strip().isdigit():
            raise OptionError("max_attempts_by_type", f"expected TYPE=N, got {entry!r}")
        counts[name.strip()] = int(value)
    return counts


class OptionError(ValueError):
    """An option of the middleware (or the proxy) has a value it cannot use.

    ``option`` is the option's name (``concurrency``, ``store_options``), ``problem`` says what is
    wrong and what is allowed; ``str()`` is both in one line. The CLI shows ``option`` as its flag.
    """

    def __init__(self, option: str, problem: str) -> None:
        self.option = option
        self.problem = problem
        super().__init__(f"{option}: {problem}")


#: Options that are whole numbers, and those that are any number (seconds): checked for their
#: type first, so ``concurrency="8"`` names the option instead of failing a comparison later.
_INTEGERS = (
    "max_body_bytes",
    "max_header_bytes",
    "spool_memory_bytes",
    "concurrency",
    "queue_size",
    "max_result_bytes",
    "max_jobs",
    "default_ttl",
    "max_ttl",
    "retry_after",
    "retry_after_max",
    "max_attempts",
    "max_queued_body_bytes",
)
_NUMBERS = ("job_timeout", "lease_seconds", "shutdown_grace", "max_wait_seconds", "poll_pacing")


@dataclasses.dataclass(frozen=True)
class AsyncJobsConfig:
    """Every option of :class:`~bifrost_async.AsyncJobsMiddleware`.

    Pass them as keyword arguments to the middleware (``AsyncJobsMiddleware(app, concurrency=8)``)
    or build this object and pass ``config=``. Sizes are bytes, durations seconds.
    """

    #: URL prefix the async routes live under.
    prefix: str = "/v1/async"
    #: Request type -> synchronous path the job is replayed to (e.g. ``{"transcription":
    #: "/api/transcribe"}``).
    route_overrides: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Extra or replacement request types.
    extra_routes: tuple[RouteSpec, ...] = ()
    #: Name of the job store (a store plugin registers it): ``"memory"`` is built in.
    store: str = "memory"
    #: Options handed to the store's factory (e.g. ``{"url": "redis://..."}``).
    store_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: Name of the work queue between submit and run (a plugin registers it with
    #: ``register_queues``): ``"local"`` (built in) runs a job in the process that accepted it;
    #: ``"redis"`` (``bifrost-async-redis``, with ``store="redis"``) lets any instance run any job,
    #: re-delivers the jobs of an instance that died and hands back those of one shut down.
    queue: str = "local"
    #: Runs of a job a distributed queue allows when instances die while running it: each lost
    #: run is re-delivered to another instance (the upstream may see the request again) until
    #: this many ran; then it fails ``worker_lost``. 1: at most once, as the local queue.
    max_attempts: int = 3
    #: Per request type overrides of ``max_attempts`` (``{"transcription": 1}``: never run a
    #: transcription twice; ``{"embedding": 5}``). As a CLI option: ``transcription=1,embedding=5``.
    max_attempts_by_type: Mapping[str, int] = dataclasses.field(default_factory=dict)
    #: Largest request body a distributed queue stores in shared storage (in pieces) for
    #: another instance to replay; larger submits get 413. The local queue ignores it.
    max_queued_body_bytes: int = 64 * MB
    #: Keys sealing the replay headers a distributed queue stores (comma-separated base64url,
    #: the first seals, all open; ``bifrost-async keygen`` makes one). ``None``: read
    #: ``BIFROST_ASYNC_ENCRYPTION_KEY``. A distributed queue refuses to start without one.
    encryption_key: str | None = dataclasses.field(default=None, repr=False)
    #: A directory every instance mounts (a shared volume) where a distributed queue stores the
    #: requests instead of in Redis (large uploads); ``None``: in Redis.
    request_dir: str | None = None
    #: This instance's name, recorded on the jobs it runs and used as its consumer name in a
    #: distributed queue; ``None``: ``host:pid``. Must differ between instances sharing a store.
    worker_name: str | None = None
    #: Name of the provider that runs jobs: ``"asgi"`` replays into the wrapped app.
    provider: str = "asgi"
    #: Options handed to the provider's factory.
    provider_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: Largest accepted request body; larger gets 413.
    max_body_bytes: int = 100 * MB
    #: Largest total size of request headers on an async route; larger gets 431.
    max_header_bytes: int = 32 * 1024
    #: Bodies up to this size stay in memory while spooled; larger ones go to a temporary file.
    spool_memory_bytes: int = 256 * 1024
    #: Directory for spool files (``None``: the system's temporary directory).
    spool_dir: str | None = None
    #: Jobs run at once.
    concurrency: int = 4
    #: Jobs accepted and waiting for a worker; beyond this a submit gets 429.
    queue_size: int = 1000
    #: Seconds one job may run before it fails with 504.
    job_timeout: float = 600.0
    #: Largest response body kept as a job's result; larger fails the job.
    max_result_bytes: int = 50 * MB
    #: Jobs kept by the memory store, finished or not; when full, submits get 503.
    max_jobs: int = 10_000
    #: Live jobs one owner may hold in the store (one credential; all anonymous callers together
    #: are one owner); beyond it that owner's submits get 429 ``owner_quota_exceeded`` while
    #: others go on. ``None``: half of ``max_jobs``; 0: no share. Holds across processes on a
    #: shared store.
    owner_max_jobs: int | None = None
    #: Jobs of one owner queued or running in this process; beyond it its submits get 429.
    #: ``None``: half of ``queue_size``; 0: no share.
    owner_queue_size: int | None = None
    #: Longest a *failed* job is kept, in seconds, whatever TTL its caller asked for: junk that
    #: fails (e.g. 401 at replay) must not hold its owner's share of the store for days.
    max_failed_ttl: int = 3600
    #: Result TTL when the client sends none (or an invalid one).
    default_ttl: int = 3600
    #: Largest TTL a client may ask for; larger requests are clamped to it.
    max_ttl: int = 7 * 24 * 3600
    #: Seconds a worker's lease on a running job lasts; it is renewed at a third of that.
    lease_seconds: float = 30.0
    #: On shutdown, seconds running and queued jobs get to finish before they are failed.
    shutdown_grace: float = 30.0
    #: The ``Retry-After`` sent with 429 and 503 answers, and the least one a 202 says: a 202's
    #: hint is half the time the job probably still needs (by its type's typical run
    #: time, its place in the queue), this when nothing is known yet (bifrost_async.core.estimate).
    retry_after: int = 1
    #: The most a 202's ``Retry-After`` says, however long the job looks: it bounds how late a
    #: client that honours the hint learns of a job that ended sooner than estimated. Equal to
    #: ``retry_after``: the hint is that constant.
    retry_after_max: int = 30
    #: Longest long-poll (``?wait=N``, ``Prefer: wait=N``) in seconds; longer asks are capped to
    #: it, 0 turns long-polling off (answers come at once, as without the extension).
    max_wait_seconds: float = 30.0
    #: A poll of an unfinished job that comes sooner than this many seconds after the job's
    #: previous answer (its submit or poll, in this process) is held until the job ends or the
    #: interval has passed, then answered: a client polling every few milliseconds gets one
    #: answer per interval (at once when its job ends) instead of starving the jobs it waits
    #: for. Clients that honour ``Retry-After`` never wait. 0 answers every poll at once. A held
    #: poll is not watched for its client leaving (that would cost two tasks per poll, as
    #: long-poll does), so keep this short: about ``retry_after``.
    poll_pacing: float = 1.0
    #: Secret for the owner digest (HMAC-SHA256); without it a plain SHA-256 is used. Must be the
    #: same on every process that shares a store.
    owner_secret: str | None = None
    #: The operator's accepted API keys and virtual keys (digests only), checked at submit by the
    #: built-in ``keys`` plugin: unknown virtual keys get 400, unknown API keys 401. As a keyword
    #: option a list of keys is accepted and digested at once with ``owner_secret``.
    api_keys: AcceptedKeys | None = None
    #: Header-driven async (``x-bf-async``) routes to add or change: path -> ``"openai"``,
    #: ``"anthropic"`` or ``"off"`` (removes a default route). See docs/HEADER_ASYNC.md.
    header_async_routes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Peers (IP addresses or CIDR networks; a comma-separated string is accepted) whose
    #: ``X-Forwarded-For`` is believed and appended to; from any other peer the header is replaced
    #: by the peer's address (see :mod:`bifrost_async.service.forwarding`). Empty: trust no one.
    trusted_proxies: tuple[str, ...] = ()
    #: Clock returning epoch seconds; tests inject their own.
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        by_type: Any = self.max_attempts_by_type
        if by_type is None or isinstance(by_type, str):  # absent, or TYPE=N,... from the CLI or TOML
            object.__setattr__(self, "max_attempts_by_type", parse_type_counts(by_type or ""))
        self._check_types()
        positive = (
            "max_body_bytes",
            "max_header_bytes",
            "concurrency",
            "queue_size",
            "job_timeout",
            "max_result_bytes",
            "max_jobs",
            "default_ttl",
            "max_ttl",
            "lease_seconds",
            "retry_after",
            "retry_after_max",
            "max_failed_ttl",
            "max_attempts",
            "max_queued_body_bytes",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise OptionError(name, f"must be positive, got {getattr(self, name)!r}")
        for name in ("spool_memory_bytes", "shutdown_grace", "max_wait_seconds", "poll_pacing"):
            if getattr(self, name) < 0:
                raise OptionError(name, f"must not be negative, got {getattr(self, name)!r}")
        for name in ("owner_max_jobs", "owner_queue_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise OptionError(
                    name, f"must be None (half the bound), 0 (no share) or positive, got {value!r}"
                )
        if self.retry_after_max < self.retry_after:
            below = f"{self.retry_after_max} must not be below retry_after ({self.retry_after})"
            raise OptionError("retry_after_max", below)
        if self.retry_after_max > MAX_HINT:
            beyond = f"must be at most {MAX_HINT} (a day), got {self.retry_after_max}"
            raise OptionError("retry_after_max", beyond)
        if self.default_ttl > self.max_ttl:
            raise OptionError("default_ttl", f"{self.default_ttl} must not exceed max_ttl ({self.max_ttl})")
        try:
            # Normalised once here, so every process and every consumer sees the same networks.
            object.__setattr__(self, "trusted_proxies", parse_trusted_proxies(self.trusted_proxies))
        except ValueError as exc:
            raise OptionError("trusted_proxies", str(exc)) from None
        try:
            self.routes()  # fail early on a bad route table
        except ValueError as exc:
            raise OptionError(
                "route_overrides" if self.route_overrides else "extra_routes", str(exc)
            ) from None
        known = self.routes().by_type
        for request_type, attempts in dict(self.max_attempts_by_type).items():
            if request_type not in known:
                raise OptionError(
                    "max_attempts_by_type",
                    f"unknown request type {request_type!r}; known: {', '.join(sorted(known))}",
                )
            if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
                raise OptionError(
                    "max_attempts_by_type", f"{request_type}: want a whole number 1 or more, got {attempts!r}"
                )
        for path, family in self.header_async_routes.items():
            if not path.startswith("/") or family not in ("openai", "anthropic", "off"):
                raise OptionError(
                    "header_async_routes",
                    f"{path!r} -> {family!r}; want a path starting with '/' "
                    "and 'openai', 'anthropic' or 'off'",
                )

    def _check_types(self) -> None:
        """Refuse a value of the wrong type (bool is not a number here), naming the option."""
        for name in (*_INTEGERS, *_NUMBERS):
            value = getattr(self, name)
            whole = name in _INTEGERS
            if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
                kind = "a whole number" if whole else "a number of seconds"
                raise OptionError(name, f"must be {kind}, got {value!r}")
            if not math.isfinite(value):
                raise OptionError(name, f"must be a finite number, got {value!r}")
        for name in ("prefix", "store", "provider", "queue"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise OptionError(name, f"must be a non-empty string, got {getattr(self, name)!r}")
        for name in ("route_overrides", "store_options", "provider_options", "max_attempts_by_type"):
            if not isinstance(getattr(self, name), Mapping):
                raise OptionError(name, f"must be a mapping, got {type(getattr(self, name)).__name__}")

    def attempts_for(self, request_type: str) -> int:
        """Runs a distributed queue allows a job of ``request_type`` (``max_attempts`` unless
        ``max_attempts_by_type`` says otherwise)."""
        return self.max_attempts_by_type.get(request_type, self.max_attempts)

    def owner_job_share(self) -> int:
        """Live jobs one owner may hold in the store (0: no share)."""
        return -(-self.max_jobs // 2) if self.owner_max_jobs is None else self.owner_max_jobs

    def owner_queue_share(self) -> int:
        """Jobs one owner may have queued or running in this process (0: no share)."""
        return -(-self.queue_size // 2) if self.owner_queue_size is None else self.owner_queue_size

    def routes(self) -> RouteTable:
        """The route table these options describe."""
        return RouteTable(
            self.prefix,
            routes=DEFAULT_ROUTES,
            overrides=self.route_overrides,
            extra=self.extra_routes,
        )

    @classmethod
    def from_options(cls, **options: Any) -> AsyncJobsConfig:
        """Build from keyword options, naming any unknown one."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            listed = ", ".join(sorted(known))
            raise TypeError(f"unknown AsyncJobsMiddleware option(s): {', '.join(unknown)}; known: {listed}")
        keys = options.get("api_keys")
        if keys is not None and not isinstance(keys, AcceptedKeys):
            if isinstance(keys, str | bytes):
                raise TypeError("api_keys must be a list of keys, not one string")
            options["api_keys"] = AcceptedKeys.from_keys(keys, options.get("owner_secret"))
        return cls(**options)
