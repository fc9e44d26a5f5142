"""The results table, printed for a terminal and written as Markdown with the machine's facts."""

from __future__ import annotations

import datetime
import glob
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .harness import GOALS, Row

HEADER = ("benchmark", "metric", "A", "B", "A/B", "goal", "met")
GOAL_HEADER = ("goal (issue 16)", "target", "figure (A/B)", "A vs B", "met")


def cells(row: Row) -> tuple[str, ...]:
    ratio = "" if row.ratio is None else f"{row.ratio:.2f}"
    met = "" if row.met is None else ("yes" if row.met else "NO")
    return (row.bench, row.metric, row.a, row.b, ratio, row.goal, met)


def goal_cells(rows: Sequence[Row], skipped: dict[str, str]) -> list[tuple[str, ...]]:
    """One line per goal of issue 16 (:data:`bench.harness.GOALS`, in its order): the figure of
    the row that decides it and "met" / "missed", or "not run" with the reason its benchmark was
    skipped (or was not asked for with ``--only``)."""
    deciding = {row.goal_key: row for row in rows if row.goal_key}
    lines = []
    for key, (bench, text) in GOALS.items():
        row = deciding.get(key)
        if row is None:
            why = f"not run: {skipped[bench]}" if bench in skipped else "not run"
            lines.append((text, "", "", f"(benchmark {bench})", why))
            continue
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}"
        lines.append((text, row.goal, ratio, f"{row.a} vs {row.b}", "met" if row.met else "missed"))
    return lines


def fixed_width(lines: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in lines]
    out.insert(1, "  ".join("-" * width for width in widths))
    return [line.rstrip() for line in out]


def text_table(rows: Sequence[Row], skipped: dict[str, str]) -> str:
    """A plain fixed-width table, then notes and skipped benchmarks, then issue 16's goals."""
    out = fixed_width([HEADER, *(cells(row) for row in rows)])
    for row in rows:
        if row.note:
            out.append(f"  [{row.bench}] {row.metric.split(',')[0]}: {row.note}")
    for name, reason in skipped.items():
        out.append(f"SKIPPED {name}: {reason}")
    out += ["", *fixed_width([GOAL_HEADER, *goal_cells(rows, skipped)])]
    return "\n".join(out)


def goal_markdown(rows: Sequence[Row], skipped: dict[str, str]) -> str:
    """Issue 16's goals as a Markdown table, met / missed in bold."""
    lines = ["| " + " | ".join(GOAL_HEADER) + " |", "|" + "---|" * len(GOAL_HEADER)]
    for *head, met in goal_cells(rows, skipped):
        lines.append("| " + " | ".join((*head, f"**{met}**" if met in ("met", "missed") else met)) + " |")
    return "\n".join(lines)


def markdown_table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join((*HEADER, "note")) + " |", "|" + "---|" * (len(HEADER) + 1)]
    for row in rows:
        lines.append("| " + " | ".join((*cells(row), row.note)) + " |")
    return "\n".join(lines)


def machine() -> list[str]:
    """Facts about this machine and the software under test."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    redis = "not installed"
    if shutil.which("redis-server"):
        redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[
            2
        ]
    postgres = "not installed"
    binary = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres")) or [shutil.which("postgres") or ""]
    if binary[-1]:
        postgres = subprocess.run([binary[-1], "--version"], capture_output=True, text=True).stdout.strip()
    import uvicorn

    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores (`os.cpu_count()`)",
        f"- OS: {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, uvicorn {uvicorn.__version__} ({loop} loop, {http} parser), "
        f"one worker per server process",
        f"- redis-server {redis.removeprefix('v=')} (redis-py {_version('redis')}, hiredis "
        f"{_version('hiredis')}); {postgres} (`fsync=off`, for the Postgres store rows)",
        f"- Load average (1 min) when the run ended: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
        "(other work on the machine takes CPU from the servers; read the ratios)",
    ]


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def write_markdown(
    path: Path, rows: Sequence[Row], skipped: dict[str, str], command: str, seconds: float, notes: str
) -> None:
    """Write the results file: machine, date, command, the table, skipped benchmarks, notes."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# Benchmark results",
        "",
        "Generated by the command below; do not edit the figures by hand (re-run it instead).",
        "A and B are measured in the same run, alternating A, B, A, B...; each figure is the median",
        "of the rounds and A/B is the ratio of the medians.",
        "",
        f"- Date: {now}",
        f"- Command: `{command}` (took {seconds:.0f} s)",
        *machine(),
        "",
        "## Goals (issue 16)",
        "",
        "Each goal's figure is the A/B ratio of the row below that decides it (the same figures).",
        "",
        goal_markdown(rows, skipped),
        "",
        "## All rows",
        "",
        markdown_table(rows),
        "",
    ]
    if skipped:
        parts += ["Skipped:", "", *(f"- {name}: {reason}" for name, reason in skipped.items()), ""]
    parts += [
        "Before/after figures of single changes, and benchmarks run by hand on a given day, are in",
        "[HISTORY.md](HISTORY.md); what limits each figure, from profiles, follows here (`NOTES.md`).",
        "",
    ]
    if notes:
        parts += [notes.strip(), ""]
    path.write_text("\n".join(parts))
