"""The README's first-board path, run exactly as written: its shell block is read from the
document (so the two cannot drift) and run by bash with `.venv/bin` on PATH. Only the two port
numbers and the work directory are replaced (by free ports and a temporary directory): a
service with TLS, an operator, a simulated board provisioned, counting over TLS."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from provisioning.service.ui import views
from provisioning.store.db import make_engine
from tools.harness.net import free_port
from tools.harness.services import REPO

# Where the path is written: a newcomer's first read.
SOURCE = REPO / "README.md"
HEADING = "## Your first board"
WORKDIR, SERVICE_PORT, BOARD_PORT = ".park/first", "8443", "4000"


def first_board_script() -> str:
    """The first ```sh block under HEADING in SOURCE."""
    text = SOURCE.read_text()
    section = text[text.index(f"\n{HEADING}\n") :]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, f"no ```sh block under {HEADING!r} in {SOURCE}"
    return match.group(1)


def _as_the_dashboard_sees_it(data: Path, name: str) -> views.Board:
    engine = make_engine(f"sqlite:///{data / 'parkfleet.db'}")
    try:
        with engine.connect() as conn:
            [board] = [b for b in views.boards(conn, 3600) if b.name == name]
            return board
    finally:
        engine.dispose()


def test_the_first_board_path_runs_as_written(tmp_path: Path) -> None:
    script = first_board_script()
    for needed in ("parkctl serve", "--tls-cert", "parkctl admin create", "parkctl provision"):
        assert needed in script, needed
    # The block's only numbers that are ports, in flags and URLs alike.
    assert script.count(SERVICE_PORT) >= 3 and script.count(BOARD_PORT) == 2
    # All but the last line, which stops the background jobs: first the board is looked at
    # as the dashboard sees it (the killpg below stops them).
    script, last = script.rstrip().rsplit("\n", 1)
    assert last.startswith("kill $(jobs -p)"), last
    runnable = (
        script.replace(WORKDIR, str(tmp_path / "first"))
        .replace(SERVICE_PORT, str(free_port()))
        .replace(BOARD_PORT, str(free_port()))
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARK_")}
    env |= {
        "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        "PARK_CACHE_DIR": str(tmp_path / "cache"),
        "COLUMNS": "120",
    }
    log = tmp_path / "out.txt"
    with log.open("w") as sink:
        # Output to a file: the background jobs hold their stdout open after the script ends.
        shell = subprocess.Popen(
            ["bash", "-e", "-c", runnable],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its background jobs, ended below whatever happens
        )
        try:
            shell.wait(timeout=240)
            board = _as_the_dashboard_sees_it(tmp_path / "first" / "data", "first-1")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(shell.pid, signal.SIGTERM)
    out = log.read_text()
    # The real agent, uploading: online and not flagged; it told its interval, and nothing
    # waits in its spool after its post.
    assert board.online and board.problems == [], board
    assert board.health.get("interval_s") == 2 and board.health.get("spool_depth") == 0, board
    assert shell.returncode == 0, out[-4000:]
    assert "listens on https://" in out, out[-4000:]
    assert re.search(r"│ first-1 .* ok ", out), out[-3000:]
    # `lot show first`: the board's second count, read back over TLS.
    assert re.search(r"^\s*cars\s+5\s*$", out, re.M), out[-3000:]
    assert re.search(r"^\s*occupancy\s+25%\s*$", out, re.M), out[-3000:]
    assert "Traceback" not in out
