"""`make bench`: run every benchmark module in `tools/bench/` and print one table.

Each module exposes `run() -> list[dict]`, rows with `bench`, `metric`, `value` and optionally
`unit`, `p50_ms`, `p99_ms`, `baseline`, `ratio`, `target`, `ok`. Name modules to run only those:
`python -m tools.bench tokens ingest`. A missed target is shown as NO in the table (a
measurement, not a crash); the exit status is 1 only when a benchmark module itself fails.
`--write FILE` also writes the table as a dated Markdown document (tools/bench/report.py):
`make bench` rewrites docs/benchmarks.md so.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
# Modules of this package that are not benchmarks. (None may take a standard library module's
# name: run as a script, this folder comes first on sys.path; hence tokens.py, not token.py.)
NOT_BENCHES = {"__init__", "__main__", "loadgen", "report"}

COLUMNS = ("bench", "metric", "value", "unit", "p50_ms", "p99_ms", "baseline", "ratio", "target")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def main(names: list[str], write_to: Path | None = None) -> int:
    """Run the benchmark modules named (all if none), print the table, write it to `write_to`."""
    console = Console(width=max(140, Console().width))
    from tools.bench import report

    machine, started_at = report.machine_facts(), time.time()
    modules = sorted(p.stem for p in HERE.glob("*.py") if p.stem not in NOT_BENCHES)
    if names:
        modules = [m for m in modules if m in names]
    rows: list[dict[str, Any]] = []
    broken = False
    for name in modules:
        console.print(f"[dim]running {name} ...[/dim]")
        started = time.monotonic()
        try:
            rows += importlib.import_module(f"tools.bench.{name}").run()
        except Exception as error:  # noqa: BLE001 - one broken bench must not hide the others
            traceback.print_exc()
            rows.append({"bench": name, "metric": "error", "value": repr(error), "ok": False})
            broken = True
        console.print(f"[dim]{name}: {time.monotonic() - started:.0f} s[/dim]")
    table = Table(title="parkfleet benchmarks")
    for column in (*COLUMNS, "ok"):
        table.add_column(column, justify="right" if column not in ("bench", "metric") else "left")
    for row in rows:
        ok = row.get("ok")
        mark = "" if ok is None else ("[green]yes[/green]" if ok else "[red]NO[/red]")
        table.add_row(*(_cell(row.get(c)) for c in COLUMNS), mark)
    console.print(table)
    if write_to is not None:
        report.write(write_to, rows, _cell, machine, started_at)
        console.print(f"wrote {write_to}")
    missed = sum(row.get("ok") is False for row in rows)
    if missed:
        console.print(f"{missed} row(s) below target, marked NO.")
    return 1 if broken else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    target = None
    if args[:1] == ["--write"] and len(args) > 1:
        target, args = Path(args[1]), args[2:]
    sys.exit(main(args, target))
