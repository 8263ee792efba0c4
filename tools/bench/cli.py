"""`make bench`: how fast `parkctl` starts (scripts run it over hundreds of boards), beside
`esptool version` and `mpremote`.

Whole processes, as a script driving `parkctl` pays them: each command runs ROUNDS times,
interleaved (every round runs every command once, in a shuffled order, after one warm-up round),
and the median wall time is compared with `esptool version`'s median from the same rounds.
Target: `parkctl --help` and every verb's `--help` within 1.5x of esptool. `device list` against a
server that is not there is an admin-API verb run for real (it fails fast), `board info` on a
port where nothing listens a board verb; both are shown for information. The slowest verb's
`--help` is held to the target too.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

from provisioning.parkctl.cli import build

BIN = Path(sys.executable).parent
ROUNDS = int(os.environ.get("BENCH_CLI_ROUNDS", "15"))
TARGET = 1.5  # x esptool version
BASELINE = "esptool version"
NO_BOARD = "socket://127.0.0.1:9"  # nothing listens there: the verb fails fast


def _commands() -> dict[str, list[str]]:
    parkctl = str(BIN / "parkctl")
    named = {
        "esptool version": [str(BIN / "esptool"), "version"],
        "mpremote --help": [str(BIN / "mpremote"), "--help"],
        "parkctl --help": [parkctl, "--help"],
        "parkctl device list --help": [parkctl, "device", "list", "--help"],
        "parkctl board info --help": [parkctl, "board", "info", "--help"],
        "parkctl device list (no server)": [parkctl, "device", "list"],
        "parkctl board info (no board)": [parkctl, "board", "info", "--port", NO_BOARD],
    }
    for verb in sorted(build().all_verbs):
        named.setdefault(f"parkctl {' '.join(verb)} --help", [parkctl, *verb, "--help"])
    return named


def _time(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(rounds: int = ROUNDS) -> dict[str, list[float]]:
    """Seconds per run of each command, `rounds` interleaved rounds after a warm-up round."""
    commands = _commands()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as cache:
        env = {
            **os.environ,
            "PARK_SERVER": "http://127.0.0.1:9",  # nothing listens there: fails fast
            "PARK_CLIENT_ID": "op_bench",
            "PARK_CLIENT_SECRET": "x" * 43,
            "PARK_CACHE_DIR": cache,
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        order = list(commands)
        for round_ in range(rounds + 1):
            random.shuffle(order)
            for name in order:
                elapsed = _time(commands[name], env)
                if round_:  # round 0 warms the page cache
                    times[name].append(elapsed)
    return times


def run() -> list[dict[str, Any]]:
    """Rows for tools/bench/__main__.py: median start-up per command, ratio against esptool."""
    times = measure()
    base = median(times[BASELINE]) * 1000
    rows: list[dict[str, Any]] = []

    def row(name: str, target: bool, metric: str | None = None) -> dict[str, Any]:
        p50 = median(times[name]) * 1000
        ratio = p50 / base
        entry: dict[str, Any] = {
            "bench": "cli",
            "metric": metric or name,
            "value": round(p50, 1),
            "unit": "ms",
            "p50_ms": round(p50, 1),
            "max_ms": round(max(times[name]) * 1000, 1),
            "baseline": round(base, 1),
            "ratio": round(ratio, 2),
            "rounds": len(times[name]),
        }
        if target:
            entry |= {"target": f"<= {TARGET}x", "ok": ratio <= TARGET}
        else:
            entry["target"] = "(info)"
        return entry

    rows.append(row(BASELINE, False))
    rows.append(row("mpremote --help", False))
    for name in ("parkctl --help", "parkctl device list --help", "parkctl board info --help"):
        rows.append(row(name, True))
    helps = [n for n in times if n.startswith("parkctl ") and n.endswith(" --help")]
    slowest = max(helps, key=lambda n: median(times[n]))
    rows.append(row(slowest, True, f"slowest of {len(helps)} --help: {slowest}"))
    rows.append(row("parkctl device list (no server)", False))
    rows.append(row("parkctl board info (no board)", False))
    return rows


if __name__ == "__main__":
    for result in run():
        print(json.dumps(result))
