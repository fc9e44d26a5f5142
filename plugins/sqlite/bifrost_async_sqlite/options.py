"""The SQLite store's options, read from ``AsyncJobsConfig.store_options``.

They arrive as strings from ``--store-option KEY=VALUE``, ``BIFROST_ASYNC_STORE_OPTION`` and the
TOML ``[store_options]`` table, and are typed and checked by the core's
:func:`~bifrost_async.store.parse_store_options`: an unknown key or a bad value stops startup in
one line naming the option.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bifrost_async.store import parse_store_options

#: The database file when no ``path`` option is given, relative to the working directory.
DEFAULT_PATH = Path("bifrost-async-jobs.db")
SYNCHRONOUS = ("off", "normal", "full", "extra")


@dataclasses.dataclass(frozen=True)
class SqliteStoreOptions:
    """Every option of the ``sqlite`` store, with its default."""

    #: The database file, shared by every process that names it (one machine; not on NFS).
    path: Path = DEFAULT_PATH
    #: Seconds a write waits for another process's write lock before the store counts as
    #: unavailable (503).
    busy_timeout: float = 5.0
    #: Seconds between two looks at the wake-up log (other processes' job ends and deletes):
    #: the longest a long-poll or a cancel in another process waits beyond the event.
    notify_interval: float = 0.05
    #: Seconds between sweeps that fail jobs whose lease ran out even if nobody polls them
    #: (0 turns the sweep off; polls still fail them).
    sweep_interval: float = 10.0
    #: Seconds between purges of expired jobs, lapsed claims and old wake-up rows (0: never;
    #: reads treat expired jobs as absent either way).
    purge_interval: float = 60.0
    #: SQLite's ``PRAGMA synchronous`` (WAL mode): ``normal`` survives a crash of any process
    #: and may lose the last writes on power loss; ``full`` survives power loss, slower.
    synchronous: str = "normal"
    #: Live jobs (unfinished, or finished and not yet expired) in the file, across every process.
    #: ``None``: the middleware's ``max_jobs``; 0: no bound.
    max_jobs: int | None = None

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> SqliteStoreOptions:
        """Build from store options (typed by :func:`~bifrost_async.store.parse_store_options`)."""
        return parse_store_options(cls, options, store="sqlite")

    def validate(self) -> None:
        """Raise :class:`ValueError` naming the first option out of range."""
        if str(self.path) in ("", ":memory:") or str(self.path).startswith("file:"):
            raise ValueError(
                "sqlite store option path must name a file (an in-memory database is not shared)"
            )
        for name in ("busy_timeout", "notify_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"sqlite store option {name} must be positive")
        for name in ("sweep_interval", "purge_interval"):
            if getattr(self, name) < 0:
                raise ValueError(f"sqlite store option {name} must not be negative")
        if self.synchronous.lower() not in SYNCHRONOUS:
            raise ValueError(f"sqlite store option synchronous must be one of {', '.join(SYNCHRONOUS)}")
        if self.max_jobs is not None and self.max_jobs < 0:
            raise ValueError("sqlite store option max_jobs must not be negative")

    def check_path(self) -> None:
        """Raise :class:`ValueError` (one line) when the file cannot be opened for writing: its
        directory is missing or not writable, or the file itself is not a writable file. Only
        looks (``stat``/``access``): nothing is created, so the factory stays free of I/O effects."""
        path = self.path
        directory = path.parent if str(path.parent) else Path(".")
        if not directory.is_dir():
            raise ValueError(f"sqlite store option path: directory {str(directory)!r} does not exist")
        if path.exists():
            if not path.is_file():
                raise ValueError(f"sqlite store option path: {str(path)!r} is not a file")
            if not os.access(path, os.R_OK | os.W_OK):
                raise ValueError(f"sqlite store option path: no permission to read and write {str(path)!r}")
        # WAL mode creates <file>-wal and <file>-shm beside the database: the directory must be writable
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ValueError(f"sqlite store option path: no permission to write in {str(directory)!r}")
