"""Processes and bookkeeping shared by the benchmarks: servers, Redis, the load generator, rows.

Every server is its own uvicorn process on a socket this process binds on 127.0.0.1 and an
ephemeral port and hands over with ``--fd``, so the port is known before the server starts and
nothing else can take it. The load generator is another process (``bench/loadgen.py``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Skip(Exception):
    """A benchmark cannot run here (a missing optional package or program); says why."""


@dataclasses.dataclass
class Settings:
    """Sizes and durations of one run: full, or ``smoke`` (tiny, to keep the code working)."""

    smoke: bool = False
    rounds: int = 5
    duration: float = 2.0
    warmup: float = 0.5
    concurrency: int = 16
    poll_cap: float = 0.005
    #: Extra ``bifrost-async serve`` arguments for the benchmarks that run the real proxy
    #: (9 and 10), e.g. ``("--queue", "redis")``; ``run.py --serve-args``.
    serve_args: tuple[str, ...] = ()

    @classmethod
    def make(cls, smoke: bool, serve_args: tuple[str, ...] = ()) -> Settings:
        if smoke:
            return cls(smoke=True, rounds=1, duration=0.3, warmup=0.1, concurrency=4, serve_args=serve_args)
        return cls(serve_args=serve_args)


#: Issue 16's goals, in its order: key -> (the benchmark that measures it, what the goal says).
#: The row that decides a goal carries its key (``Row.goal_key``); ``report.goal_table`` lists
#: every goal with that row's figure and met / missed, or why it was not measured.
GOALS: dict[str, tuple[str, str]] = {
    "cpu": ("roundtrip", "server CPU per job (submit + one poll, memory store) vs per sync call"),
    "prefer": ("roundtrip", "`Prefer: wait` round trip (one request per job) vs sync calls/s"),
    "storm": ("roundtrip", "poll storm: jobs/s, 64 clients polling every 5 ms vs 16 clients"),
    "redis": ("redis", "Redis store vs memory store, jobs/s, one process"),
    "arq": ("arq", "jobs/s per CPU core, ours (Redis store) vs Starlette + arq, same Redis, same work"),
    "saq": ("arq", "jobs/s per CPU core, ours (Redis store) vs Starlette + saq, same Redis, same work"),
    "roundtrip": ("roundtrip", "job round trip (submit + poll every 5 ms) vs sync calls/s"),
}


@dataclasses.dataclass
class Row:
    """One line of the results table. ``ratio`` compares A to B measured in the same run.
    ``goal_key``: the key in :data:`GOALS` of the goal this row decides, if any."""

    bench: str
    metric: str
    a: str
    b: str = ""
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None
    note: str = ""
    goal_key: str = ""


def env_for(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # A PYTHONPATH given by the caller comes first (e.g. to benchmark another checkout of the core).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH", ""), str(ROOT)]))
    env.update(extra)
    return env


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


class Process:
    """A child process with CPU and memory readings from ``/proc``."""

    def __init__(self, args: list[str], env: dict[str, str], pass_fds: tuple[int, ...] = ()) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - kept for the error message
        self.proc = subprocess.Popen(
            args, env=env, pass_fds=pass_fds, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.pid = self.proc.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def status_kb(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def rss(self) -> int:
        return self.status_kb("VmRSS") * 1024

    def peak_rss(self) -> int:
        return self.status_kb("VmHWM") * 1024

    def reset_peak(self) -> None:
        """Make VmHWM start again from the current RSS (Linux ``clear_refs`` 5)."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Server(Process):
    """uvicorn serving ``factory`` (``bench.apps:combined``, ...) on its own port (``serve.py``)."""

    def __init__(self, factory: str, ready_path: str = "/bare/ping", **env: str) -> None:
        self.sock = listening_socket()
        self.port: int = self.sock.getsockname()[1]
        fd = self.sock.fileno()
        args = [sys.executable, str(ROOT / "bench" / "serve.py"), factory, str(fd)]
        super().__init__(args, env_for(**env), pass_fds=(fd,))
        self.wait_ready(ready_path)

    def wait_ready(self, path: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not ready: {self.output()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        super().stop()
        self.sock.close()


class RedisServer(Process):
    """A throw-away ``redis-server`` on an ephemeral port, without persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise Skip("redis-server is not installed")
        probe = listening_socket()
        self.port = probe.getsockname()[1]
        probe.close()
        self.dir = tempfile.mkdtemp(prefix="bench-redis-")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        super().__init__([*args, "--dir", self.dir], env_for())
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 10
        while not self.ping():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"redis-server did not start: {self.output()}")
            time.sleep(0.05)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *words: str) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall((" ".join(words) + "\r\n").encode())
            conn.recv(1024)

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer:
    """A throw-away PostgreSQL (``bifrost_async_postgres.server``: ``initdb`` into a temporary
    directory, ephemeral port, ``fsync`` off), for the Postgres store benchmark."""

    def __init__(self) -> None:
        try:
            from bifrost_async_postgres.server import PostgresServer as Cluster
        except ImportError:
            raise Skip(
                "the Postgres store plugin is not installed (pip install -e plugins/postgres)"
            ) from None
        try:
            self.cluster = Cluster()
        except FileNotFoundError as exc:
            raise Skip(str(exc)) from None
        self.cluster.start()
        self.url = self.cluster.url

    def stop(self) -> None:
        self.cluster.destroy()


class LoadGen:
    """The load generator process: one JSON command in, one JSON result out."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "loadgen.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    def run(self, **spec: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(spec) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the load generator exited")
        result: dict[str, Any] = json.loads(line)
        if "error" in result:
            raise RuntimeError(f"load generator: {result['error']}")
        return result

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(10)


@contextmanager
def started(*things: Process | PostgresServer | LoadGen) -> Iterator[None]:
    try:
        yield
    finally:
        for thing in reversed(things):
            thing.close() if isinstance(thing, LoadGen) else thing.stop()


RunningT = TypeVar("RunningT", bound="Process | PostgresServer")


class Running(ExitStack):
    """Processes started one after the other (``running.up(Server(...))``) and stopped in reverse
    order when the block ends, also when a later one fails to start."""

    def up(self, thing: RunningT) -> RunningT:
        self.enter_context(started(thing))
        return thing


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def measure(
    servers: list[Server] | list[Process],
    action: Callable[[], dict[str, Any]],
    load: LoadGen | None = None,
    backend: Process | None = None,
) -> dict[str, Any]:
    """Run ``action`` and add ``server_cpu``: the servers' CPU time over its wall time (1.0 is one
    core busy throughout), which tells whether the server or the load generator was the limit.
    With ``backend`` (the ``redis-server`` the servers share) also ``backend_cpu``, the same
    share for it."""
    before = sum(server.cpu_seconds() for server in servers)
    load_before = cpu_seconds(load.proc.pid) if load else 0.0
    backend_before = backend.cpu_seconds() if backend else 0.0
    began = time.monotonic()
    result = action()
    wall = time.monotonic() - began
    used = sum(server.cpu_seconds() for server in servers) - before
    result["server_cpu"] = used / wall if wall > 0 else 0.0
    if load is not None:
        result["load_cpu"] = (cpu_seconds(load.proc.pid) - load_before) / wall if wall > 0 else 0.0
    if backend is not None:
        result["backend_cpu"] = (backend.cpu_seconds() - backend_before) / wall if wall > 0 else 0.0
    return result


def alternate(
    rounds: int, a: Callable[[], dict[str, Any]], b: Callable[[], dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run A, B, A, B... ``rounds`` times each (B first on odd rounds, so neither always leads)."""
    results_a: list[dict[str, Any]] = []
    results_b: list[dict[str, Any]] = []
    for n in range(rounds):
        order = [(a, results_a), (b, results_b)]
        for action, sink in order if n % 2 == 0 else reversed(order):
            sink.append(action())
    return results_a, results_b


def alternate_many(
    rounds: int, actions: dict[str, Callable[[], dict[str, Any]]]
) -> dict[str, list[dict[str, Any]]]:
    """Like :func:`alternate` for several arms: each round runs every arm once, the order rotated
    by one arm per round."""
    names = list(actions)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for n in range(rounds):
        shift = n % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(actions[name]())
    return results


def median(results: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(result[key]) for result in results)


def cpu_per_op(leg: dict[str, Any]) -> float:
    """Server CPU microseconds per completed operation (job or call) in one leg of
    :func:`measure`; NaN when the leg completed none."""
    return float(leg["server_cpu"] / leg["rate"] * 1e6) if leg["rate"] else math.nan


def median_cpu_per_op(results: list[dict[str, Any]]) -> float:
    """Median of :func:`cpu_per_op` over the legs that completed something."""
    return statistics.median(cpu_per_op(leg) for leg in results if leg["rate"])


def safe_ratio(a: float, b: float) -> float:
    """``a / b``, or NaN when ``b`` is 0 (a leg that completed nothing, e.g. on a stalled
    machine in a smoke run): the table shows ``nan`` instead of the run crashing."""
    return a / b if b else math.nan


def fmt(value: float, unit: str = "") -> str:
    """A figure with three significant digits-ish and its unit."""
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def mib(value: float) -> str:
    return f"{value / 1024 / 1024:.1f} MiB"


#: The trivial endpoint's request body, in every job round trip.
EMBED_BODY = json.dumps({"model": "openai/text-embedding-3-small", "input": "hello"})


def jobs_spec(settings: Settings, ports: list[int], path: str = "/v1/async/embeddings") -> dict[str, Any]:
    """The load generator's command for a job round trip (submit, poll until done)."""
    return {
        "mode": "jobs",
        "ports": ports,
        "path": path,
        "body": EMBED_BODY,
        "concurrency": settings.concurrency,
        "duration": settings.duration,
        "warmup": settings.warmup,
        "poll_cap": settings.poll_cap,
    }


def sync_spec(settings: Settings, ports: list[int], path: str = "/bare/v1/embeddings") -> dict[str, Any]:
    """The load generator's command for calling the trivial endpoint synchronously."""
    return {
        "mode": "requests",
        "ports": ports,
        "method": "POST",
        "path": path,
        "body": EMBED_BODY,
        "concurrency": settings.concurrency,
        "duration": settings.duration,
        "warmup": settings.warmup,
    }


def shared_store_rows(
    settings: Settings,
    load: LoadGen,
    *,
    name: str,
    label: str,
    env: dict[str, str],
    goal: float | None,
    two_note: str,
    goal_key: str = "",
) -> list[Row]:
    """The two rows every shared store's benchmark reports, measured the same way for each: the
    job round trip on the store ``label`` (servers started with ``env``) vs the memory store, one
    process each; and two processes on that store (submit on one, poll on the other) vs one.
    ``goal``: the ratio to memory the first row must reach (``None``: reported only), and
    ``goal_key`` the key in :data:`GOALS` that row decides, if any. Whatever
    the store needs (a server, a file) must be up while this runs."""
    memory = Server("bench.apps:combined")
    with started(memory):
        first = Server("bench.apps:combined", **env)
        with started(first):
            second = Server("bench.apps:combined", **env)
            with started(second):
                one, mem = alternate(
                    settings.rounds,
                    lambda: measure([first], lambda: load.run(**jobs_spec(settings, [first.port]))),
                    lambda: measure([memory], lambda: load.run(**jobs_spec(settings, [memory.port]))),
                )
                pair = [first, second]
                two, single = alternate(
                    settings.rounds,
                    lambda: measure(pair, lambda: load.run(**jobs_spec(settings, [s.port for s in pair]))),
                    lambda: measure([first], lambda: load.run(**jobs_spec(settings, [first.port]))),
                )
    ratio = safe_ratio(median(one, "rate"), median(mem, "rate"))
    two_ratio = safe_ratio(median(two, "rate"), median(single, "rate"))
    conc = settings.concurrency
    return [
        Row(
            name,
            f"jobs/s, {label} store vs memory store, 1 process, {conc} concurrent",
            fmt(median(one, "rate"), "jobs/s"),
            fmt(median(mem, "rate"), "jobs/s"),
            ratio,
            "(report)" if goal is None else f"≥ {goal}",
            None if goal is None else ratio >= goal,
            f"p50 {fmt(median(one, 'p50_ms'), 'ms')} vs {fmt(median(mem, 'p50_ms'), 'ms')}; server CPU "
            f"{median(one, 'server_cpu'):.0%} vs {median(mem, 'server_cpu'):.0%}",
            goal_key=goal_key,
        ),
        Row(
            name,
            f"jobs/s, {label} store, 2 processes vs 1 (submit on one, poll on the other), {conc} concurrent",
            fmt(median(two, "rate"), "jobs/s"),
            fmt(median(single, "rate"), "jobs/s"),
            two_ratio,
            "> 1",
            two_ratio > 1,
            f"servers' CPU {median(two, 'server_cpu'):.0%} vs {median(single, 'server_cpu'):.0%} of a core "
            f"{two_note}",
        ),
    ]
