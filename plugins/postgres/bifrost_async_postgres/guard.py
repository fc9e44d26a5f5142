"""PostgreSQL failures in the core's terms: a full disk is ``StoreFull`` (503); the server being
unreachable, restarting, overloaded, slow or answering an error is ``StoreUnavailable`` (503 with
``Retry-After``), never a 500. Connection-level failures are retried once on a fresh connection
(a pooled connection is stale after a server restart); every write is idempotent, so a write
whose reply was lost may be sent again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import asyncpg
import structlog
from bifrost_async.store import StoreFull, StoreUnavailable

log = structlog.get_logger(__name__)

#: Failures worth one more attempt on another connection: the connection died (a server
#: restart, a network cut), the server is starting or shutting down, or the transaction lost a
#: deadlock or serialization race.
RETRYABLE: tuple[type[BaseException], ...] = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.CannotConnectNowError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a connection left mid-operation by a failure
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash shutdown
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    ConnectionError,
)

#: Failures that mean "not now": the above when the retry failed too, refused connections,
#: timeouts (a query, a pooled connection) and a server out of connections or memory.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    *RETRYABLE,
    OSError,
    asyncio.TimeoutError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InsufficientResourcesError,
)


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Map what PostgreSQL or the driver raised to the core's store errors."""
    try:
        yield
    except asyncpg.DiskFullError:
        raise StoreFull("the PostgreSQL job store is out of disk space") from None
    except UNAVAILABLE as exc:
        log.warning("postgres_store.unavailable", error_type=type(exc).__name__)
        raise StoreUnavailable(f"postgres is unavailable ({type(exc).__name__})") from None
    except asyncpg.PostgresError as exc:
        # a condition of the server (a dropped table, a read-only replica...), not of the request;
        # logged as an error with PostgreSQL's message since an operator may need to act
        log.error("postgres_store.error", error_type=type(exc).__name__, error=str(exc)[:200])
        raise StoreUnavailable(f"postgres answered an error ({type(exc).__name__})") from None
