"""`make demo` smoke test: the whole product on one machine, run for a few seconds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.parkctl.fleet.conftest import REPO


def test_demo_updates_the_boards_and_stops_everything(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.demo",
            "--duration",
            "120",
            "--until-updated",
            "--dir",
            str(tmp_path / "demo"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "COLUMNS": "160"},
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # The zone board, then the north lot's two gate boards, then the attendant's recount.
    assert "1/1 boards ready" in done.stdout and "2/2 boards ready" in done.stdout
    assert "Lot north recounted: 12 car(s)" in done.stdout
    assert "north" in done.stdout and "south" in done.stdout
    # The dashboard and a viewer's sign-in are printed; capacities come from the lot records.
    assert "/ui/" in done.stdout and "client secret" in done.stdout
    assert "120" in done.stdout and "60" in done.stdout
    assert "demo stopped" in done.stdout
    # The over-the-air update: release 1.1.0 built, published and rolled out, canary first;
    # each board's version change shows, and the rollout ends with every board confirmed.
    assert "Built release 1.0.0" in done.stdout and "Built release 1.1.0" in done.stdout
    assert "Published release 1.1.0" in done.stdout
    assert "canary north-entrance" in done.stdout
    for name in ("north-entrance", "north-exit", "south-gate"):
        assert f"{name}: runs 1.1.0, confirmed" in done.stdout
    assert "rollout 1 of 1.1.0: done; 3/3 boards confirmed" in done.stdout
    # Every board's simulator (and its MicroPython) ended with the demo.
    for ready in (tmp_path / "demo").glob("sim-*/ready.json"):
        pid = int(__import__("json").loads(ready.read_text())["pid"])
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
