"""`make demo` smoke test: the whole product on one machine, run for a few seconds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.parkctl.fleet.conftest import REPO
from tools.harness.parkctl import python_module


def test_demo_updates_the_boards_and_stops_everything(tmp_path: Path) -> None:
    done = python_module(
        "tools.demo",
        "--duration",
        "120",
        "--until-updated",
        "--dir",
        str(tmp_path / "demo"),
        env={**os.environ, "COLUMNS": "160"},
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # The zone board, then the north lot's two gate boards, then the attendant's recount.
    assert "1/1 boards ready" in done.stdout and "2/2 boards ready" in done.stdout
    assert "Lot north recounted: 12 car(s)" in done.stdout
    assert "north" in done.stdout and "south" in done.stdout
    # The dashboard and a viewer's sign-in are printed; capacities come from the lot records.
    assert "/ui/" in done.stdout and "client secret" in done.stdout
    # The operator's credentials in an owner-only file, and how to point parkctl at the demo.
    creds = tmp_path / "demo" / "operator.env"
    assert f"set -a; . {creds}; set +a" in done.stdout and "parkctl device list" in done.stdout
    assert creds.stat().st_mode & 0o077 == 0
    assert creds.read_text().startswith("PARK_SERVER=http://")
    assert "120" in done.stdout and "60" in done.stdout
    assert "demo stopped" in done.stdout
    # The over-the-air update: release 1.1.0 built, published and rolled out, canary first;
    # each board's version change shows, and the rollout ends with every board confirmed.
    assert "Built release 1.0.0" in done.stdout and "Built release 1.1.0" in done.stdout
    assert "Published release 1.1.0" in done.stdout
    # The canary is picked by a stable hash of the device id: one of the three boards.
    assert re.search(r"canary (north-entrance|north-exit|south-gate);", done.stdout)
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


def test_ctrl_c_during_provisioning_ends_without_a_traceback(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the terminal's process group: the demo and every child) while the
    boards are being provisioned: one line, everything stopped, no traceback."""
    import signal
    import time

    log = tmp_path / "out.txt"
    with log.open("w") as sink:
        demo = subprocess.Popen(
            [sys.executable, "-m", "tools.demo", "--dir", str(tmp_path / "demo")],
            cwd=REPO,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "160"},
            start_new_session=True,  # its own group: the SIGINT below is a terminal's Ctrl-C
        )
        try:
            deadline = time.monotonic() + 120
            while "parkctl fleet provision" not in log.read_text():
                assert time.monotonic() < deadline and demo.poll() is None, log.read_text()
                time.sleep(0.2)
            time.sleep(2)  # inside the run: flashing or installing
            os.killpg(demo.pid, signal.SIGINT)
            demo.wait(timeout=60)
        finally:
            if demo.poll() is None:
                os.killpg(demo.pid, signal.SIGKILL)
    out = log.read_text()
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out[-3000:]
    assert "demo stopped; everything it started has ended." in out, out[-3000:]
    # The operator's credentials file was not reached yet, or is owner-only.
    creds = tmp_path / "demo" / "operator.env"
    assert not creds.exists() or creds.stat().st_mode & 0o077 == 0
