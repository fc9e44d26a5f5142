"""Configuration of the async job layer: one frozen dataclass, validated when built."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

from .forwarding import parse_trusted_proxies
from .routes import DEFAULT_ROUTES, RouteSpec, RouteTable

MB = 1024 * 1024


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
    #: Result TTL when the client sends none (or an invalid one).
    default_ttl: int = 3600
    #: Largest TTL a client may ask for; larger requests are clamped to it.
    max_ttl: int = 7 * 24 * 3600
    #: Seconds a worker's lease on a running job lasts; it is renewed at a third of that.
    lease_seconds: float = 30.0
    #: On shutdown, seconds running and queued jobs get to finish before they are failed.
    shutdown_grace: float = 30.0
    #: The ``Retry-After`` value sent with 202, 429 and 503 answers.
    retry_after: int = 1
    #: Longest long-poll (``?wait=N``, ``Prefer: wait=N``) in seconds; longer asks are capped to
    #: it, 0 turns long-polling off (answers come at once, as without the extension).
    max_wait_seconds: float = 30.0
    #: Secret for the owner digest (HMAC-SHA256); without it a plain SHA-256 is used. Must be the
    #: same on every process that shares a store.
    owner_secret: str | None = None
    #: Peers (IP addresses or CIDR networks; a comma-separated string is accepted) whose
    #: ``X-Forwarded-For`` is believed and appended to; from any other peer the header is replaced
    #: by the peer's address (see :mod:`bifrost_async.forwarding`). Empty: trust no one.
    trusted_proxies: tuple[str, ...] = ()
    #: Clock returning epoch seconds; tests inject their own.
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
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
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("spool_memory_bytes", "shutdown_grace", "max_wait_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)!r}")
        if self.default_ttl > self.max_ttl:
            raise ValueError("default_ttl must not exceed max_ttl")
        # Normalised once here, so every process and every consumer sees the same networks.
        object.__setattr__(self, "trusted_proxies", parse_trusted_proxies(self.trusted_proxies))
        self.routes()  # fail early on a bad route table

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
            raise TypeError(f"unknown AsyncJobsMiddleware option(s): {', '.join(unknown)}")
        return cls(**options)
