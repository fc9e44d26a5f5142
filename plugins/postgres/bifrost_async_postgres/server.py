"""A throw-away PostgreSQL server for tests and benchmarks: ``initdb`` into a temporary
directory, ``pg_ctl start`` on 127.0.0.1 and an ephemeral port, trust authentication from
127.0.0.1 only, no Unix socket, ``fsync`` off. It can be stopped and started again on the same
port with its data (a restart, as an operator's would be).

It uses the binaries of Debian's ``postgresql`` package (``/usr/lib/postgresql/<version>/bin``)
or any ``initdb`` on ``PATH``. PostgreSQL refuses to run as root, so when this process is root
(a CI container) every command runs as the ``postgres`` user (``runuser``), which then owns the
data directory. Not used by the store itself.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

#: Seconds ``start`` waits for the server to accept connections.
START_DEADLINE = 60.0


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (newest Debian version first), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version, reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _version(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


def free_port() -> int:
    """A port nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory; :attr:`url` names its ``postgres``
    database as the ``postgres`` superuser (trust authentication)."""

    def __init__(self, bindir: Path | None = None) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bindir = found
        self._as_postgres = os.geteuid() == 0
        # as root, under /tmp: the postgres user must be able to reach the directory, which a
        # root-only $TMPDIR would forbid
        self.root = Path(tempfile.mkdtemp(prefix="bifrost-pg-", dir="/tmp" if self._as_postgres else None))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self._initialized = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        return subprocess.run([*prefix, *command], capture_output=True, text=True, check=check, timeout=120)

    def _init(self) -> None:
        if self._as_postgres:  # the cluster's files must belong to the user that runs it
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        # only TCP from this machine: no Unix socket, trust for 127.0.0.1 alone
        (self.data / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
        self._initialized = True

    def start(self) -> None:
        """Start the server (initialising the cluster first time); return once it accepts
        connections. A port taken before the first start moves the server to a fresh one."""
        if not self._initialized:
            self._init()
        for _attempt in range(5):
            if self._start_once():
                return
            if self._started_before:
                break
            self.port = free_port()
        raise RuntimeError(f"PostgreSQL did not start on port {self.port}:\n{self._tail()}")

    _started_before = False

    def _start_once(self) -> bool:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
        options += "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        done = self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "-t", str(int(START_DEADLINE)), "start", check=False,
        )  # fmt: skip
        if done.returncode == 0 and self.ready():
            self._started_before = True
            return True
        return False

    def ready(self) -> bool:
        """True when the server accepts connections (``pg_isready``)."""
        probe = [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-t", "5"]
        return subprocess.run(probe, capture_output=True, check=False).returncode == 0

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop -m fast``: clients are disconnected); its data stays."""
        if (self.data / "postmaster.pid").exists():
            self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False
            )

    def destroy(self) -> None:
        """Stop the server and remove its directory."""
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def _tail(self) -> str:
        try:
            return self.log.read_text()[-3000:]
        except OSError:
            return "(no log)"


def wait_until_ready(server: PostgresServer, deadline: float = START_DEADLINE) -> None:
    """Poll :meth:`PostgresServer.ready` until it holds, up to ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not server.ready():
        if time.monotonic() > end:
            raise RuntimeError("PostgreSQL is not ready")
        time.sleep(0.05)
