"""The accepted-keys check: when the operator configured keys (``api_keys``), refuse a submit
whose credential is not one of them, before its body is read.

- a virtual key (``sk-bf-...``) that is not configured: **400**, Bifrost's answer (only when at
  least one virtual key is configured);
- another credential that is not configured, or no credential at all: **401** (only when at
  least one API key that is not a virtual key is configured).

Without ``api_keys`` nothing is checked. Polls are not checked here: the owner rule already
hides a job from everyone but its owner.
"""

from __future__ import annotations

from typing import Any

from bifrost_async.core.errors import AsyncJobError
from bifrost_async.core.hookspecs import hookimpl
from bifrost_async.service.credentials import AcceptedKeys, presented_credential, virtual_key


@hookimpl
def pre_accept(
    headers: list[tuple[bytes, bytes]], scope: dict[str, Any], request_type: str, config: Any
) -> None:
    """Refuse unknown virtual keys (400) and unknown or missing API keys (401)."""
    keys: AcceptedKeys | None = getattr(config, "api_keys", None)
    if keys is None:
        return
    credential = presented_credential(headers)
    if credential is None:
        if keys.has_api_keys:
            raise _unauthorized()
        return  # only virtual keys configured: a keyless job is public, as in Bifrost
    if virtual_key(*credential) is not None:
        if keys.has_virtual_keys and not keys.check(*credential):
            raise AsyncJobError(400, "virtual key not found", code="virtual_key_not_found")
        if keys.has_virtual_keys or not keys.has_api_keys:
            return
        raise _unauthorized()  # virtual keys are not accepted where only API keys are listed
    if keys.has_api_keys and not keys.check(*credential):
        raise _unauthorized()


def _unauthorized() -> AsyncJobError:
    return AsyncJobError(
        401, "invalid or missing API key", type="authentication_error", code="invalid_api_key"
    )
