"""bifrost-async: Bifrost's asynchronous job API (``/v1/async/*``) for any synchronous endpoint.

``AsyncJobsMiddleware(app)`` wraps an ASGI app; ``bifrost-async serve --upstream URL`` puts a
proxy in front of a gateway. Plugins implement the hooks in :mod:`bifrost_async.core.hookspecs`.
"""

from .core.errors import AsyncJobError
from .core.hookspecs import hookimpl
from .core.jobs import Job, JobStatus
from .core.provider import Provider, ProviderContext, ProviderError
from .core.store import JobStore, OwnerShareFull, StoreContext, StoreFull, StoreUnavailable
from .http.middleware import AsyncJobsMiddleware
from .service.config import AsyncJobsConfig
from .service.routes import DEFAULT_ROUTES, RouteSpec

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ROUTES",
    "AsyncJobError",
    "AsyncJobsConfig",
    "AsyncJobsMiddleware",
    "Job",
    "JobStatus",
    "JobStore",
    "OwnerShareFull",
    "Provider",
    "ProviderContext",
    "ProviderError",
    "RouteSpec",
    "StoreContext",
    "StoreFull",
    "StoreUnavailable",
    "hookimpl",
]
