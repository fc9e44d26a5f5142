"""Fixtures for every test under this repository (``tests/`` and ``plugins/*/tests``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _logging_is_per_test(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts and ends with the same structlog configuration and root handlers.

    ``bifrost-async serve`` configures logging for the whole process, with
    ``cache_logger_on_first_use``. A test that runs it in-process (``main(["serve", ...])``, or
    ``configure_logging`` itself) would otherwise leave that configuration behind, and every
    module logger first used afterwards would keep it for good, writing to a stream pytest has
    closed, unseen by a later test's ``structlog.testing.capture_logs``. So caching is turned off
    while a test runs and the configuration is put back after it.
    """
    configure = structlog.configure
    monkeypatch.setattr(
        structlog, "configure", lambda **kw: configure(**{**kw, "cache_logger_on_first_use": False})
    )
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)
