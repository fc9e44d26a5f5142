"""The provider contract: where a job's captured request really runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from bifrost_async.core.capture import CapturedRequest
from bifrost_async.core.outcome import CapturedResponse


class ProviderError(Exception):
    """The request could not be run to a response; the job fails with ``status_code``.

    Use 502 for an unreachable or broken upstream, 504 for a timeout, 500 for a crash.
    ``message`` reaches the client, so it must not carry secrets or tracebacks.
    """

    def __init__(self, status_code: int, message: str, *, code: str = "provider_error") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.code = code


class ResultTooLarge(ProviderError):
    """The response body is larger than ``max_result_bytes``."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            502, f"response body exceeds the result limit of {limit} bytes", code="result_too_large"
        )


@dataclasses.dataclass(frozen=True)
class ProviderContext:
    """What a provider factory receives: the wrapped ASGI app (``None`` when there is none, as in
    the standalone proxy) and the provider's own options (``AsyncJobsConfig.provider_options``)."""

    app: Any
    options: Mapping[str, Any]


@runtime_checkable
class Provider(Protocol):
    """Runs captured requests and returns captured responses."""

    async def start(self) -> None:
        """Open sessions; called once before the first job runs."""

    async def close(self) -> None:
        """Close sessions; called once at shutdown, after the last job."""

    async def execute(self, request: CapturedRequest, *, max_result_bytes: int) -> CapturedResponse:
        """Run ``request`` (its ``path`` is already the synchronous path) and return the response.

        Raise :class:`ProviderError` for a failure that has a clear cause, :class:`ResultTooLarge`
        when the body exceeds ``max_result_bytes``. Cancellation (timeout, shutdown) must stop the
        work. Any other exception fails the job with 500.
        """
        ...


ProviderFactory = Callable[[ProviderContext], Provider]
