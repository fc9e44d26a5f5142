"""Bifrost's error shape, used for every error body and every failed job's ``error``."""

from __future__ import annotations

from typing import Any

NOT_FOUND_MESSAGE = "job not found or expired"


def error_body(
    status_code: int,
    message: str,
    *,
    type: str | None = None,
    code: str | None = None,
    param: str | None = None,
    extra_fields: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a Bifrost-shaped error: ``error.message`` and ``extra_fields`` are always present,
    the other fields only when known."""
    inner: dict[str, Any] = {"message": message}
    if type is not None:
        inner["type"] = type
    if code is not None:
        inner["code"] = code
    if param is not None:
        inner["param"] = param
    body: dict[str, Any] = {
        "is_bifrost_error": False,
        "status_code": status_code,
        "error": inner,
        "extra_fields": dict(extra_fields or {}),
    }
    if type is not None:
        body["type"] = type
    return body


class AsyncJobError(Exception):
    """An error the service answers itself, in the contract's shape.

    Raised inside the submit and poll paths; the middleware turns it into a JSON response with
    ``status_code`` and, where set, ``headers`` (e.g. ``Retry-After``).
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        extra_fields: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})
        self.extra_fields = dict(extra_fields or {})

    def body(self) -> dict[str, Any]:
        """The JSON body for this error."""
        return error_body(
            self.status_code,
            self.message,
            type=self.type,
            code=self.code,
            param=self.param,
            extra_fields=self.extra_fields,
        )


def not_found() -> AsyncJobError:
    """The one 404 for every way of not finding a job, so nothing leaks about which it was."""
    return AsyncJobError(404, NOT_FOUND_MESSAGE, type="not_found_error", code="job_not_found")


def model_extra_fields(model: str | None, request_type: str) -> dict[str, Any]:
    """``extra_fields`` for a request: provider and model from a ``provider/model`` string."""
    fields: dict[str, Any] = {"request_type": request_type}
    if model:
        provider, sep, name = model.partition("/")
        if sep and provider and name:
            fields["provider"] = provider
            fields["model_requested"] = name
        else:
            fields["model_requested"] = model
    return fields
