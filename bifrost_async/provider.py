"""Public module for plugin authors.

The provider protocol: what runs a captured request and returns the endpoint's response.

The code lives in :mod:`bifrost_async.core.provider`; this module re-exports its public names, so
``from bifrost_async.provider import ...`` keeps working wherever the code moves.
"""

from bifrost_async.core.capture import CapturedRequest as CapturedRequest
from bifrost_async.core.outcome import CapturedResponse as CapturedResponse
from bifrost_async.core.provider import (
    Provider as Provider,
)
from bifrost_async.core.provider import (
    ProviderContext as ProviderContext,
)
from bifrost_async.core.provider import (
    ProviderError as ProviderError,
)
from bifrost_async.core.provider import (
    ProviderFactory as ProviderFactory,
)
from bifrost_async.core.provider import (
    ResultTooLarge as ResultTooLarge,
)
