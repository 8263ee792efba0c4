"""`docs/benchmarks.md`: the figures of one `make bench` run, dated, with the machine they were
measured on. Rewritten whole on every run: the document holds the latest figures only (git
keeps the history)."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_HEADER = """# Benchmarks

Measured {date} by `make bench` (`python -m tools.bench`, which rewrites this file;
each module of `tools/bench/` says what it measures and how). Ratios compare two figures of the same
run, so they hold on another machine better than the rates do.

Machine: {machine}.

| what | measured | target |
| --- | --- | --- |
"""


def machine_facts() -> str:
    """CPU model and count, memory, OS, Python, and the load when the run started."""
    model = platform.processor() or platform.machine()
    memory = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / 2**20:.1f} GiB memory"
                break
    except OSError:
        pass  # not Linux: the model from `platform` will do
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return (
        f"{model}, {os.cpu_count()} logical CPUs{memory}; {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}"
        + (f"; load average {load:.1f} at the start" if load is not None else "")
    )


def _measured(row: dict[str, Any], cell: Callable[[Any], str]) -> str:
    text = cell(row.get("value"))
    if row.get("unit"):
        text += f" {row['unit']}"
    if row.get("baseline") is not None:
        text += f" (baseline {cell(row['baseline'])}, ratio {cell(row.get('ratio'))})"
    if row.get("p50_ms") is not None and row.get("p99_ms") is not None:
        text += f"; latency p50 {cell(row['p50_ms'])} ms, p99 {cell(row['p99_ms'])} ms"
    return text


def _target(row: dict[str, Any]) -> str:
    target = str(row.get("target") or "")
    ok = row.get("ok")
    if ok is None:
        return target
    return f"{target} {'met' if ok else '**missed**'}".strip()


def render(
    rows: list[dict[str, Any]], cell: Callable[[Any], str], machine: str, when: float
) -> str:
    """The document for `rows` (as `tools.bench` collects them)."""
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when))
    lines = [_HEADER.format(date=date, machine=machine)]
    for row in rows:
        what = f"{row.get('bench', '')}: {row.get('metric', '')}".replace("|", "\\|")
        measured = _measured(row, cell).replace("|", "\\|")
        lines.append(f"| {what} | {measured} | {_target(row).replace('|', chr(92) + '|')} |\n")
    return "".join(lines)


def write(
    path: Path, rows: list[dict[str, Any]], cell: Callable[[Any], str], machine: str, when: float
) -> None:
    """Rewrite `path` with `rows`, measured at `when` on `machine` (`machine_facts()` taken
    when the run started)."""
    path.write_text(render(rows, cell, machine, when))
