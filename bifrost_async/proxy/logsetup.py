"""Logging setup for the command line: structlog everywhere, console on a terminal, JSON elsewhere.

Only the CLI calls :func:`configure_logging`; library code just calls ``structlog.get_logger()``.
Standard-library records (uvicorn's) go through the same renderer, so a log stream has one format.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, Literal

import structlog
import structlog.tracebacks
from structlog.typing import EventDict, Processor, WrappedLogger

LogFormat = Literal["auto", "json", "console"]

REDACTED = "[redacted]"
#: Keys whose values are credentials, in any case and with ``-`` or ``_``.
SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "x_api_key",
        "api_key",
        "x_bf_vk",
        "x_goog_api_key",
        "owner_secret",
        "password",
        "secret",
        "token",
        "access_token",
    }
)


def _sensitive(key: Any) -> bool:
    if isinstance(key, bytes):
        key = key.decode("latin-1", "replace")
    return isinstance(key, str) and key.lower().replace("-", "_") in SENSITIVE_KEYS


def _scrub(value: Any, depth: int = 0) -> Any:
    """Replace credential values inside dicts, header lists and pairs, however nested."""
    if depth > 6:
        return value
    if isinstance(value, Mapping):
        return {k: REDACTED if _sensitive(k) else _scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, tuple) and len(value) == 2 and _sensitive(value[0]):
        return (value[0], REDACTED)
    if isinstance(value, list | tuple):
        return type(value)(_scrub(item, depth + 1) for item in value)
    return value


def redact_credentials(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: credentials never reach a log line, whatever key or header list
    carries them."""
    return {k: REDACTED if _sensitive(k) else _scrub(v) for k, v in event_dict.items()}


def configure_logging(level: str = "info", format: LogFormat = "auto") -> None:
    """Route structlog and the standard library (uvicorn, aiohttp) to stderr.

    ``format="auto"`` renders for humans when stderr is a terminal, JSON lines otherwise.
    """
    if format == "auto":
        format = "console" if sys.stderr.isatty() else "json"
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_credentials,
    ]
    # Tracebacks never show local variables: a frame's locals can hold headers or a body.
    renderer: Processor
    if format == "json":
        transformer = structlog.tracebacks.ExceptionDictTransformer(show_locals=False, use_rich=False)
        shared.append(structlog.processors.ExceptionRenderer(transformer))
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Events below ``level`` are dropped by a no-op method before any event dict is built
        # (the stdlib BoundLogger ran the processor chain to filter_by_level for each of them:
        # several per job at the default "warning").
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # uvicorn's own handlers would print a second, differently formatted copy.
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
        # The root's level (--log-level) decides for them too, whatever level an earlier
        # uvicorn.Config(log_level=...) in this process left on them.
        logging.getLogger(name).setLevel(logging.NOTSET)
