"""Several ``bifrost-async serve`` instances on one Redis, for benchmarks 9 and 10 (issue 14).

An :class:`Instance` is the real proxy (``python -m bifrost_async serve``) on a socket this
process binds and hands over with ``--fd``, with the Redis store, metrics on and the extra serve
arguments a benchmark gives (``--queue redis`` once the distributed queue exists). Its
``/metrics`` say how many jobs it ran and how many it runs now.

The distributed queue (``--queue redis``, issue 14) is detected, not assumed:
:func:`queue_available` reads ``bifrost-async serve --help``. With ``--queue`` among the extra
arguments, the instances also get ``BIFROST_ASYNC_REDIS_URL`` and, unless the caller set one,
``BIFROST_ASYNC_ENCRYPTION_KEY`` from ``bifrost-async keygen``.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import urllib.request

from .harness import Process, Server, Skip, env_for, listening_socket

#: The owner digest key every instance shares (the load generator is one anonymous owner).
OWNER_SECRET = "bench-secret"


@functools.cache
def serve_help() -> str:
    """The text of ``bifrost-async serve --help`` of the core under test."""
    done = subprocess.run(
        [sys.executable, "-m", "bifrost_async", "serve", "--help"],
        env=env_for(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout


def queue_available() -> bool:
    """Whether this core has the distributed queue's switch (``serve --queue``)."""
    return "--queue " in serve_help() or "--queue=" in serve_help()


def wants_queue(extra: tuple[str, ...]) -> bool:
    return any(arg == "--queue" or arg.startswith("--queue=") for arg in extra)


def require_queue() -> None:
    """:class:`Skip` when ``serve --queue`` does not exist in this core."""
    if not queue_available():
        raise Skip("--queue not available (bifrost-async serve --help does not mention it)")


@functools.cache
def encryption_key() -> str:
    """A fresh key from ``bifrost-async keygen``, once per run (the instances must share it)."""
    done = subprocess.run(
        [sys.executable, "-m", "bifrost_async", "keygen"],
        env=env_for(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise Skip(f"bifrost-async keygen failed: {(done.stderr or done.stdout).strip()[:200]}")
    return done.stdout.strip().splitlines()[-1].strip()


class Instance(Server):
    """``bifrost-async serve --store redis`` in front of ``upstream_port``, with ``extra`` args."""

    def __init__(self, upstream_port: int, redis_url: str, extra: tuple[str, ...] = ()) -> None:
        self.sock = listening_socket()
        self.port = self.sock.getsockname()[1]
        fd = self.sock.fileno()
        args = [
            sys.executable,
            "-m",
            "bifrost_async",
            "serve",
            "--upstream",
            f"http://127.0.0.1:{upstream_port}",
            "--fd",
            str(fd),
            "--store",
            "redis",
            "--store-option",
            f"url={redis_url}",
            "--store-option",
            "prefix=bench:",
            # Far more jobs than one run creates; one load generator is one owner, so no shares.
            "--store-option",
            "max_jobs=0",
            "--owner-max-jobs",
            "0",
            "--owner-queue-size",
            "0",
            "--metrics",
            "on",
            "--log-level",
            "warning",
            "--upstream-health-path",
            "/ping",
            *extra,
        ]
        env = {"BIFROST_ASYNC_OWNER_SECRET": OWNER_SECRET}
        if wants_queue(extra):
            env["BIFROST_ASYNC_REDIS_URL"] = redis_url
            env["BIFROST_ASYNC_ENCRYPTION_KEY"] = (
                os.environ.get("BIFROST_ASYNC_ENCRYPTION_KEY") or encryption_key()
            )
        Process.__init__(self, args, env_for(**env), pass_fds=(fd,))
        self.wait_ready("/healthz")

    def metric(self, name: str, **labels: str) -> float:
        """The sum of metric ``name`` over the samples whose labels include ``labels``."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        total = 0.0
        wanted = [f'{key}="{value}"' for key, value in labels.items()]
        for line in text.splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            sample, _, value = line.rpartition(" ")
            base = sample.split("{", 1)[0]
            if base != name:
                continue
            if all(label in sample for label in wanted):
                total += float(value)
        return total

    def completed(self) -> float:
        """Jobs this instance has run to ``completed`` so far."""
        return self.metric("bifrost_async_jobs_finished_total", status="completed")

    def running(self) -> float:
        """Jobs this instance runs now."""
        return self.metric("bifrost_async_jobs_running")
