"""Fixtures for every test under this repository (``tests/`` and ``plugins/*/tests``)."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import sys
import threading
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


#: Seconds after which a still-running test has the stacks of its event loop's tasks written to
#: stderr: pytest-timeout (240 s) shows only the thread stacks, and a hung ``await`` appears there
#: as the loop's ``select``. This says which coroutine is stuck.
TASK_DUMP_AFTER = 180.0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Dump every live asyncio task's stack if this test runs past :data:`TASK_DUMP_AFTER`."""
    finished = threading.Event()

    def watch() -> None:
        if finished.wait(TASK_DUMP_AFTER):
            return
        out = io.StringIO()
        print(f"\n=== {item.nodeid} still running after {TASK_DUMP_AFTER:g} s; asyncio tasks:", file=out)
        for obj in gc.get_objects():
            if isinstance(obj, asyncio.Task) and not obj.done():
                print(f"--- {obj.get_name()}", file=out)
                obj.print_stack(file=out)
        stream = sys.__stderr__ or sys.stderr  # past pytest's capture
        stream.write(out.getvalue())
        stream.flush()

    threading.Thread(target=watch, name="task-dump", daemon=True).start()
    try:
        yield
    finally:
        finished.set()
