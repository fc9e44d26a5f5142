"""Public module for plugin authors.

The plugin hooks (pluggy specifications), the ``hookimpl`` marker and the entry-point group.

The code lives in :mod:`bifrost_async.core.hookspecs`; this module re-exports its public names, so
``from bifrost_async.hookspecs import ...`` keeps working wherever the code moves.
"""

from bifrost_async.core.hookspecs import (
    PROJECT as PROJECT,
)
from bifrost_async.core.hookspecs import (
    async_jobs_shutdown as async_jobs_shutdown,
)
from bifrost_async.core.hookspecs import (
    async_jobs_startup as async_jobs_startup,
)
from bifrost_async.core.hookspecs import (
    hookimpl as hookimpl,
)
from bifrost_async.core.hookspecs import (
    hookspec as hookspec,
)
from bifrost_async.core.hookspecs import (
    job_finished as job_finished,
)
from bifrost_async.core.hookspecs import (
    job_owner as job_owner,
)
from bifrost_async.core.hookspecs import (
    job_started as job_started,
)
from bifrost_async.core.hookspecs import (
    job_submitted as job_submitted,
)
from bifrost_async.core.hookspecs import (
    pre_accept as pre_accept,
)
from bifrost_async.core.hookspecs import (
    register_providers as register_providers,
)
from bifrost_async.core.hookspecs import (
    register_stores as register_stores,
)
from bifrost_async.core.hookspecs import (
    validate_submit as validate_submit,
)
