"""Public module for plugin authors.

The errors the service answers with, in Bifrost's error shape: :class:`AsyncJobError` and helpers.

The code lives in :mod:`bifrost_async.core.errors`; this module re-exports its public names, so
``from bifrost_async.errors import ...`` keeps working wherever the code moves.
"""

from bifrost_async.core.errors import (
    NOT_FOUND_MESSAGE as NOT_FOUND_MESSAGE,
)
from bifrost_async.core.errors import (
    AsyncJobError as AsyncJobError,
)
from bifrost_async.core.errors import (
    error_body as error_body,
)
from bifrost_async.core.errors import (
    model_extra_fields as model_extra_fields,
)
from bifrost_async.core.errors import (
    not_found as not_found,
)
