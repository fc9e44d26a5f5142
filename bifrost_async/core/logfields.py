"""Exception details that are safe to log.

A rendered traceback with local variables (what some structlog renderers print for
``exc_info``) could show a request's headers or body. These fields carry the exception type and
the stack of file, line and function names only: no locals and no exception message, which may
quote the input.
"""

from __future__ import annotations

import traceback
from typing import Any


def exception_fields(exc: BaseException) -> dict[str, Any]:
    """``exc_type`` and a locals-free, message-free ``frames`` string for a log event.

    (Not ``stack`` or ``exception``: structlog renderers treat those keys specially.)
    """
    frames = traceback.extract_tb(exc.__traceback__)
    where = " <- ".join(f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in reversed(frames))
    return {"exc_type": f"{type(exc).__module__}.{type(exc).__qualname__}", "frames": where}
