"""`docs/benchmarks.md` as `make bench` writes it (tools/bench/report.py): one dated table."""

from __future__ import annotations

from pathlib import Path

from tools.bench import report
from tools.bench.__main__ import _cell

ROWS = [
    {
        "bench": "token",
        "metric": "POST /oauth/token, 64 connections",
        "unit": "tokens/s",
        "value": 3608.0,
        "p50_ms": 17.2,
        "p99_ms": 40.1,
        "baseline": 7022.0,
        "ratio": 0.514,
        "target": ">= 0.50",
        "ok": True,
    },
    {"bench": "cli", "metric": "parkctl --help", "unit": "ms", "value": 190, "target": "<= 1.5x"},
    {"bench": "x", "metric": "a|b", "value": "boom", "ok": False},
]


def test_the_document_is_one_dated_table_of_what_measured_and_target(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    path.write_text("an older run\n")
    report.write(path, ROWS, _cell, "a test machine", 0.0)
    text = path.read_text()
    assert "an older run" not in text  # rewritten whole: no run history
    assert "Measured 1970-01-01 00:00 UTC" in text
    assert "Machine: a test machine." in text
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table == [
        "| what | measured | target |",
        "| --- | --- | --- |",
        "| token: POST /oauth/token, 64 connections | 3,608 tokens/s (baseline 7,022, ratio "
        "0.514); latency p50 17 ms, p99 40 ms | >= 0.50 met |",
        "| cli: parkctl --help | 190 ms | <= 1.5x |",
        "| x: a\\|b | boom | **missed** |",
    ]


def test_the_machine_facts_name_cpus_and_python() -> None:
    facts = report.machine_facts()
    assert "logical CPUs" in facts
    assert "Python 3." in facts
