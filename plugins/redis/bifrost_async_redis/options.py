"""The Redis store's options, read from ``AsyncJobsConfig.store_options``.

Options may arrive as strings (``bifrost-async serve --store-option max_connections=20``), so every
numeric option is converted here, and an unknown option is an error rather than silently ignored:
a typo in a deployment's configuration should fail at startup, not in production traffic.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from bifrost_async.store import parse_store_options

#: Environment variable read for the URL when no ``url`` option is given.
URL_ENV = "BIFROST_ASYNC_REDIS_URL"
DEFAULT_URL = "redis://127.0.0.1:6379/0"


@dataclasses.dataclass(frozen=True)
class RedisStoreOptions:
    """Every option of the ``redis`` store, with its default."""

    #: ``redis://[user:password@]host:port/db`` or ``rediss://`` (TLS) or ``unix://``.
    url: str = DEFAULT_URL
    #: Prepended to every key; put a hash tag in it (``{bifrost-async}:``) for Redis Cluster.
    prefix: str = "bifrost-async:"
    #: Connections in the pool, per process. A command waits for a free one up to ``socket_timeout``.
    max_connections: int = 50
    #: Seconds a command may take before the store counts as unavailable (503).
    socket_timeout: float = 5.0
    #: Seconds to open a connection.
    socket_connect_timeout: float = 2.0
    #: Retries of a command after a connection error (one retry survives a stale pooled connection
    #: after a Redis restart; more would delay the 503 a client should get while Redis is down).
    retries: int = 1
    #: Live jobs (unfinished, or finished and not yet expired) across every process sharing the
    #: prefix; beyond it submits get 503. ``None``: the middleware's ``max_jobs``; 0: no bound.
    max_jobs: int | None = None
    #: Seconds between sweeps that fail jobs whose lease ran out even if nobody polls them
    #: (0 turns the sweep off; polls still fail them).
    sweep_interval: float = 10.0
    #: Seconds a webhook delivery being attempted may go without its process's heartbeat (sent
    #: every third of this) before another process takes it over: the holder died.
    webhook_claim_idle: float = 60.0

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> RedisStoreOptions:
        """Build from store options (typed and range-checked by the core's
        :func:`~bifrost_async.store.parse_store_options`); ``url`` falls back to
        ``$BIFROST_ASYNC_REDIS_URL``."""
        if "url" not in options and os.environ.get(URL_ENV):
            options = {**options, "url": os.environ[URL_ENV]}
        return parse_store_options(cls, options, store="redis")

    def validate(self) -> None:
        """Raise :class:`ValueError` naming the first option out of range (a URL scheme other
        than ``redis``/``rediss``/``unix``, an empty prefix, a non-positive size or timeout, a
        negative count or interval), so a bad configuration stops startup."""
        scheme = urlsplit(self.url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"redis store url must be redis://, rediss:// or unix://, not {scheme!r}")
        if not self.prefix:
            raise ValueError("redis store prefix must not be empty")
        for name in ("max_connections", "socket_timeout", "socket_connect_timeout", "webhook_claim_idle"):
            if getattr(self, name) <= 0:
                raise ValueError(f"redis store option {name} must be positive")
        for name in ("retries", "sweep_interval"):
            if getattr(self, name) < 0:
                raise ValueError(f"redis store option {name} must not be negative")
        if self.max_jobs is not None and self.max_jobs < 0:
            raise ValueError("redis store option max_jobs must not be negative")

    def safe_url(self) -> str:
        """The URL without its password, fit for a log line."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"
