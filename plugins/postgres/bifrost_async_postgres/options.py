"""The Postgres store's options, read from ``AsyncJobsConfig.store_options``.

They arrive as strings from ``--store-option``, the environment or TOML; the core's
:func:`~bifrost_async.store.parse_store_options` types them and refuses unknown keys, and
:meth:`PostgresStoreOptions.validate` checks ranges, so a bad configuration stops the server
before it starts, in one line.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bifrost_async.store import parse_store_options

#: Environment variable read for the URL when no ``url`` option is given.
URL_ENV = "BIFROST_ASYNC_POSTGRES_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
#: A schema name we can use unquoted-safe in SQL and in a NOTIFY channel name (at most 63 bytes).
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,47}")
#: libpq's ``sslmode`` values (asyncpg refuses others only when it connects).
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


@dataclasses.dataclass(frozen=True)
class PostgresStoreOptions:
    """Every option of the ``postgres`` store, with its default."""

    #: ``postgresql://user[:password]@host:port/database`` (libpq's ``PG*`` variables such as
    #: ``PGPASSWORD`` fill what it leaves out). Falls back to ``$BIFROST_ASYNC_POSTGRES_URL``.
    url: str = DEFAULT_URL
    #: The schema holding the store's tables; deployments sharing one database each use their own.
    schema: str = "bifrost_async"
    #: Connections in the pool, per process (the listener holds one more). A query waits for a
    #: free one up to ``command_timeout``.
    pool_size: int = 10
    #: Seconds to open a connection.
    connect_timeout: float = 5.0
    #: Seconds a query (or the wait for a pooled connection) may take before the store counts as
    #: unavailable (503).
    command_timeout: float = 10.0
    #: Live jobs across every process sharing the schema; beyond it submits get 503.
    #: ``None``: the middleware's ``max_jobs``; 0: no bound.
    max_jobs: int | None = None
    #: Seconds between sweeps that fail jobs whose lease ran out even if nobody polls them
    #: (0 turns the sweep off; polls still fail them).
    sweep_interval: float = 10.0
    #: Seconds between purges of expired rows (reads already treat them as absent; 0: off, but
    #: then expired rows pile up and each create counts them for the bound).
    purge_interval: float = 60.0
    #: Expired rows one purge transaction deletes at most (a purge runs several while more remain).
    purge_batch: int = 1000
    #: Apply pending schema migrations at startup (under an advisory lock). ``false``: refuse to
    #: start on a database that is not migrated; run ``python -m bifrost_async_postgres migrate``.
    migrate: bool = True

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> PostgresStoreOptions:
        """Build from store options; ``url`` falls back to ``$BIFROST_ASYNC_POSTGRES_URL``."""
        if "url" not in options and os.environ.get(URL_ENV):
            options = {**options, "url": os.environ[URL_ENV]}
        return parse_store_options(cls, options, store="postgres")

    def validate(self) -> None:
        """Raise :class:`ValueError` naming the first option out of range."""
        # the URL may hold a password: messages name what is wrong, never echo it
        try:
            parts = urlsplit(self.url)
            parts.port  # noqa: B018 - parses the port: "host:abc" raises here, not on first use
        except ValueError:
            raise ValueError("postgres store url is not a valid URL (check the host and port)") from None
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError(f"postgres store url must be postgresql://, not {parts.scheme!r}")
        sslmode = parse_qs(parts.query).get("sslmode", ["prefer"])[-1]
        if sslmode not in _SSLMODES:
            raise ValueError(f"postgres store url: sslmode must be one of {', '.join(_SSLMODES)}")
        if not _SCHEMA.fullmatch(self.schema):
            raise ValueError(
                "postgres store option schema must be 1-48 of a-z, 0-9 and _ (not starting with a digit)"
            )
        for name in ("pool_size", "connect_timeout", "command_timeout", "purge_batch"):
            if getattr(self, name) <= 0:
                raise ValueError(f"postgres store option {name} must be positive")
        for name in ("sweep_interval", "purge_interval"):
            if getattr(self, name) < 0:
                raise ValueError(f"postgres store option {name} must not be negative")
        if self.max_jobs is not None and self.max_jobs < 0:
            raise ValueError("postgres store option max_jobs must not be negative")

    def safe_url(self) -> str:
        """The URL without user or password, fit for a log line."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"

    @property
    def quoted_schema(self) -> str:
        """The schema as a quoted SQL identifier (validated, so plain quoting is enough)."""
        return f'"{self.schema}"'

    @property
    def channel(self) -> str:
        """The NOTIFY channel every terminal update and delete announces the job id on."""
        return f"bifrost_async_{self.schema}"
