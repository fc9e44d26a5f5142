"""Run every benchmark on this machine and print a table: ``python bench/run.py``.

``--smoke`` runs tiny sizes (seconds, for CI); ``--only NAME`` (repeatable) picks benchmarks;
``--markdown PATH`` also writes the results file (machine, date, command, table, notes);
``--serve-args ARGS`` gives benchmarks 9 and 10 extra ``bifrost-async serve`` arguments.
A benchmark whose optional dependency is missing is skipped with its reason.
After the table comes one line per goal of issue 16 (``bench.harness.GOALS``) with the figure of
the row that decides it and met / missed; the Markdown file puts that table first.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import LoadGen, Row, Settings, Skip
from bench.report import text_table, write_markdown

BENCHMARKS = (
    "b1_passthrough",
    "b2_roundtrip",
    "b3_submit",
    "b4_memory",
    "b5_redis",
    "b6_arq",
    "b7_sqlite",
    "b8_postgres",
    "b9_instances",
    "b10_redelivery",
)
NOTES = Path(__file__).resolve().parent / "NOTES.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the benchmarks run")
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="run only this one")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="also write the results here")
    parser.add_argument(
        "--serve-args",
        default="",
        metavar="ARGS",
        help="extra `bifrost-async serve` arguments for benchmarks 9 and 10, shell-quoted "
        "(e.g. '--queue redis')",
    )
    args = parser.parse_args(argv)
    try:
        serve_args = tuple(shlex.split(args.serve_args))
    except ValueError as exc:
        parser.error(f"--serve-args: {exc}")
    settings = Settings.make(args.smoke, serve_args)
    modules = [importlib.import_module(f"bench.{name}") for name in BENCHMARKS]
    known = {module.NAME for module in modules}
    unknown = set(args.only) - known
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    rows: list[Row] = []
    skipped: dict[str, str] = {}
    failed: list[str] = []
    started = time.monotonic()
    load = LoadGen()
    try:
        for module in modules:
            if args.only and module.NAME not in args.only:
                continue
            print(f"running {module.TITLE} ...", file=sys.stderr, flush=True)
            began = time.monotonic()
            try:
                rows += module.run(settings, load)
            except Skip as exc:
                skipped[module.NAME] = str(exc)
            except Exception:
                traceback.print_exc()
                failed.append(module.NAME)
            print(f"  {module.NAME}: {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    finally:
        load.close()
    seconds = time.monotonic() - started
    print(text_table(rows, skipped))
    print(f"total {seconds:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if args.markdown:
        command = "python bench/run.py " + shlex.join(argv if argv is not None else sys.argv[1:])
        notes = NOTES.read_text() if NOTES.exists() else ""
        write_markdown(args.markdown, rows, skipped, command.strip(), seconds, notes)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
