"""bifrost-async: Bifrost's asynchronous job API (``/v1/async/*``) for any synchronous endpoint.

``AsyncJobsMiddleware(app)`` wraps an ASGI app; ``bifrost-async serve --upstream URL`` puts a
proxy in front of a gateway. Plugins implement the hooks in :mod:`bifrost_async.hookspecs`.
"""

from .config import AsyncJobsConfig
from .errors import AsyncJobError
from .hookspecs import hookimpl
from .jobs import Job, JobStatus
from .middleware import AsyncJobsMiddleware
from .provider import Provider, ProviderContext, ProviderError
from .routes import DEFAULT_ROUTES, RouteSpec
from .store import JobStore, OwnerShareFull, StoreContext, StoreFull, StoreUnavailable

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
