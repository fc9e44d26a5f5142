"""Public module for plugin authors.

The job record: :class:`Job`, :class:`JobStatus`, job ids and the forward-only status rule.

The code lives in :mod:`bifrost_async.core.jobs`; this module re-exports its public names, so
``from bifrost_async.jobs import ...`` keeps working wherever the code moves.
"""

from bifrost_async.core.jobs import (
    TRANSITIONS as TRANSITIONS,
)
from bifrost_async.core.jobs import (
    Job as Job,
)
from bifrost_async.core.jobs import (
    JobStatus as JobStatus,
)
from bifrost_async.core.jobs import (
    is_job_id as is_job_id,
)
from bifrost_async.core.jobs import (
    may_move as may_move,
)
from bifrost_async.core.jobs import (
    new_job_id as new_job_id,
)
from bifrost_async.core.jobs import (
    rfc3339 as rfc3339,
)
