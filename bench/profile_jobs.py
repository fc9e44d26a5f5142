"""Profile a server under the job round trip with py-spy: ``python bench/profile_jobs.py``.

Starts ``bench.apps:combined`` (``--store redis`` starts a redis-server for it), drives the job
round trip of benchmark 2 from the load generator, samples the server with ``py-spy record``
(needs py-spy, and ptrace rights: root or ``CAP_SYS_PTRACE``) and prints where its time goes:
by function (self time), by bifrost_async function (inclusive time), and by layer. ``--svg``
also writes a flame graph.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import LoadGen, RedisServer, Server, Settings, jobs_spec, started

LAYERS = (
    ("bifrost_async", "bifrost_async/"),
    ("structlog", "structlog/"),
    ("pluggy", "pluggy/"),
    ("uvicorn/h11", "uvicorn/"),
    ("h11", "h11/"),
    ("starlette", "starlette/"),
    ("redis", "redis/"),
    ("asyncio", "asyncio/"),
    ("json", "json/"),
)


PHASES = (
    ("runner (replaying jobs into the app)", "JobRunner._work"),
    ("submit", "JobService.submit"),
    ("poll", "JobService.poll"),
    ("sending responses", "send_json"),
)


def frames(stack: str) -> list[str]:
    """The stack's frames as ``function (file)``, without line numbers, so lines add up."""
    out = []
    for frame in stack.split(";"):
        name, _, where = frame.partition(" (")
        out.append(f"{name} ({where.rsplit(':', 1)[0]})" if where else name)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--store", choices=("memory", "redis"), default="memory")
    parser.add_argument("--svg", type=Path, help="also write a flame graph here")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--prefer-wait",
        action="store_true",
        help="submit with Prefer: wait=10 (needs the long-poll extension)",
    )
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    redis = RedisServer() if args.store == "redis" else None
    env = {"BENCH_STORE": args.store, **({"BENCH_REDIS_URL": redis.url} if redis else {})}
    server = Server("bench.apps:combined", **env)
    load = LoadGen()
    settings = Settings(duration=args.seconds + 2, warmup=0.5)
    raw = Path(tempfile.mkdtemp(prefix="bench-prof-")) / "stacks.txt"
    with started(*([redis] if redis else []), server, load):
        result: dict[str, object] = {}
        spec = jobs_spec(settings, [server.port])
        if args.prefer_wait:  # one request per job: the submit answers with the finished job
            spec |= {"long_poll": 10, "prefer_wait": True}
        worker = threading.Thread(target=lambda: result.update(load.run(**spec)))
        worker.start()
        cmd = [spy, "record", "-p", str(server.pid), "-d", str(int(args.seconds)), "-r", "250"]
        subprocess.run([*cmd, "-f", "raw", "-o", str(raw), "--nonblocking"], check=True, capture_output=True)
        if args.svg:
            subprocess.run([*cmd, "-o", str(args.svg), "--nonblocking"], check=True, capture_output=True)
        worker.join()
    print(f"load: {result.get('rate', 0):.0f} jobs/s, p50 {result.get('p50_ms', 0):.2f} ms (while sampled)")
    report(raw, args.top)
    return 0


def report(raw: Path, top: int) -> None:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    layers: collections.Counter[str] = collections.Counter()
    phases: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        stack_frames = frames(stack)
        own[stack_frames[-1]] += count
        for frame in set(stack_frames):
            if "bifrost_async" in frame:
                inclusive[frame] += count
        leaf = stack_frames[-1]
        layer = next((name for name, marker in LAYERS if marker in leaf), "other")
        layers[layer] += count
        joined = ";".join(stack_frames)
        for name, marker in PHASES:
            if marker in joined:
                phases[name] += count
    print(f"\n{total} samples. Self time by layer (the file of the innermost frame):")
    for name, count in layers.most_common():
        print(f"  {count / total:6.1%}  {name}")
    print("\nInclusive time by phase (a sample may count in two, e.g. submit and sending):")
    for name, count in phases.most_common():
        print(f"  {count / total:6.1%}  {name}")
    print("\nSelf time, top functions:")
    for frame, count in own.most_common(top):
        print(f"  {count / total:6.1%}  {frame}")
    print("\nInclusive time, bifrost_async functions:")
    for frame, count in inclusive.most_common(top):
        print(f"  {count / total:6.1%}  {frame}")


if __name__ == "__main__":
    sys.exit(main())
