"""Redis failures in the core's terms: out of memory is ``StoreFull`` (503), anything else Redis
answers or fails with is ``StoreUnavailable`` (503 with ``Retry-After``), never a 500."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis.exceptions as rexc
import structlog
from bifrost_async.store import StoreFull, StoreUnavailable

log = structlog.get_logger(__name__)

#: Failures that mean "not now" rather than "wrong request". ConnectionError covers refused
#: connections, busy loading (a restarting server reading its data), authentication and an
#: exhausted pool.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    rexc.ConnectionError,
    rexc.TimeoutError,
    rexc.ReadOnlyError,
    rexc.TryAgainError,
    rexc.ClusterDownError,
    OSError,
)


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Turn Redis being unreachable, slow, out of memory or answering an error into the core's
    store errors.

    An error reply (``ResponseError``: ``BUSY`` while a script runs too long, ``MISCONF`` when
    Redis cannot persist, ``NOSCRIPT`` should a reload fail, ...) is a condition of the server,
    not of the request, so it is a 503 too; it is logged as an error with Redis's message, since
    unlike an outage it may need an operator. ``NOSCRIPT`` itself never gets here: redis-py's
    script objects reload a flushed script and run it again.
    """
    try:
        yield
    except rexc.OutOfMemoryError:  # a ResponseError: caught first
        raise StoreFull("the Redis job store is out of memory (maxmemory reached)") from None
    except UNAVAILABLE as exc:
        # debug: during an outage every call fails; the middleware's StoreReachability says it
        # once (store.unreachable, then store.reachable)
        log.debug("redis_store.unavailable", error_type=type(exc).__name__)
        raise StoreUnavailable(f"redis is unavailable ({type(exc).__name__})") from None
    except rexc.ResponseError as exc:
        log.error("redis_store.error_reply", error_type=type(exc).__name__, error=str(exc)[:200])
        raise StoreUnavailable(f"redis answered an error ({type(exc).__name__})") from None
