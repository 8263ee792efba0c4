"""mpremote driver: what is on a board's filesystem, and copying the agent and its config there.

mpremote runs as a subprocess (`python -m mpremote connect PORT cmd + cmd ...`): its command line is
its supported interface (its Python modules are internals), one invocation opens the port once for
a whole chain of commands, and it always closes the port when it exits, even on an error.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provisioning.common.bundle import STATE_FILE, InstallPlan, install_plan
from provisioning.common.errors import ParkctlError
from provisioning.parkctl.release.mpy import check_board_mpy

# Board files that belong to a previous identity: a token cached for old credentials would hide
# whether the new ones work (the verify step waits for a fresh token).
STALE_FILES = ("token.json",)
MPREMOTE_TIMEOUT_S = 120.0

# (files copied, files total)
CopyProgressFn = Callable[[int, int], None]


def mpremote(
    port: str,
    args: list[str],
    timeout: float = MPREMOTE_TIMEOUT_S,
    on_line: Callable[[str], None] | None = None,
) -> str:
    """Run one mpremote command chain on `port`; return its stdout (each line also to `on_line`).

    Errors become one `ParkctlError`; the port is closed when mpremote exits, whatever happened.
    """
    command = [sys.executable, "-m", "mpremote", "connect", port, *args]
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        lines: list[str] = []
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if on_line:
                    on_line(line.rstrip("\n"))
            code = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        errors.seek(0)
        stderr = errors.read()
    output = "".join(lines)
    if code < 0:
        raise ParkctlError(
            f"{port}: the board stopped answering mpremote after {timeout:.0f} s; "
            "reset it and re-run"
        )
    if code != 0:
        raise _explain(port, (stderr or output).strip())
    return output


def _explain(port: str, output: str) -> ParkctlError:
    last = output.splitlines()[-1] if output else "no output"
    lowered = output.lower()
    if "failed to access" in lowered or "no device found" in lowered:
        return ParkctlError(f"{port}: cannot open the port; is the board plugged in?")
    if "could not enter raw repl" in lowered:
        return ParkctlError(
            f"{port}: no MicroPython REPL on the board; flash MicroPython first "
            "(parkctl board flash)"
        )
    if any(s in lowered for s in ("disconnected", "serialexception", "readiness", "brokenpipe")):
        return ParkctlError(
            f"{port}: the board vanished during the copy ({last}); reconnect it and re-run, "
            "which copies everything again"
        )
    if any(s in lowered for s in ("enospc", "errno 28", "no space left")):
        return ParkctlError(f"{port}: the board's filesystem is full ({last})")
    return ParkctlError(f"{port}: mpremote failed: {last}")


@dataclass(frozen=True)
class BoardFiles:
    """What `board info` reports from the REPL side."""

    micropython: str  # e.g. "MicroPython 1.24.1"
    machine: str
    files: list[str]
    mpy: int | None  # sys.implementation._mpy: the .mpy version the board loads

    @property
    def agent_installed(self) -> bool:
        return "main.py" in self.files and "config.json" in self.files


_PROBE = (
    "import os, sys, json\n"
    "print(json.dumps({'v': '.'.join(str(n) for n in sys.implementation.version[:3]),"
    " 'm': getattr(sys.implementation, '_machine', sys.platform), 'f': sorted(os.listdir()),"
    " 'mpy': getattr(sys.implementation, '_mpy', None)}))"
)


def board_files(port: str) -> BoardFiles:
    """MicroPython version and the files at the board's filesystem root."""
    out = mpremote(port, ["exec", _PROBE], timeout=30)
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            try:
                data = json.loads(line)
                return BoardFiles(
                    f"MicroPython {data['v']}", str(data["m"]), list(data["f"]), data.get("mpy")
                )
            except (ValueError, KeyError, TypeError):
                break  # not our probe's answer: reported below
    answer = " ".join(out.split())[-200:]  # one line, whatever the board sent
    raise ParkctlError(f"{port}: unexpected answer from the board's REPL: {answer}")


def _prepare_snippet(dirs: list[str]) -> str:
    # mkdir fails on an existing directory and mpremote's `fs mkdir` would abort the chain.
    lines = ["import os"]
    for d in dirs:
        lines.append(f"try:\n os.mkdir({d!r})\nexcept OSError:\n pass")
    for name in STALE_FILES:
        lines.append(f"try:\n os.remove({name!r})\nexcept OSError:\n pass")
    return "\n".join(lines)


def install(
    port: str,
    extra_files: list[Path],
    plan: InstallPlan | None = None,
    reset: bool = True,
    progress: CopyProgressFn | None = None,
) -> int:
    """Copy a release (`plan`, by default this parkctl's agent built now: the boot stub at the
    root, the .mpy modules in app_a/, app.json naming them) and `extra_files` (config.json, CA)
    to the board.

    First reads the board's `.mpy` version and refuses a board that could not load the modules
    (a built release's: the `.mpy` version in its manifest).
    Then one mpremote session for all files (a connection costs a soft reset of the board), its
    output read line by line for the progress; files already identical on the board are skipped
    by mpremote's hash check, so a re-run after a failed copy only sends what is missing. Returns
    the number of files. With `reset`, hard-resets the board at the end.
    """
    board_mpy = board_files(port).mpy
    plan = plan or install_plan(None)
    check_board_mpy(port, board_mpy, plan.needs_mpy)
    with tempfile.TemporaryDirectory(prefix="parkctl-app-") as stage:
        state = Path(stage) / STATE_FILE
        state.write_bytes(plan.app_state())
        sources = plan.files + [(path, path.name) for path in [*extra_files, state]]
        return _copy(port, sources, reset, progress)


def _copy(
    port: str, sources: list[tuple[Path, str]], reset: bool, progress: CopyProgressFn | None
) -> int:
    dirs = sorted({str(Path(dest).parent) for _, dest in sources} - {"."}, key=len)
    args = ["exec", _prepare_snippet(dirs)]
    for src, dest in sources:
        args += ["+", "fs", "cp", str(src), f":{dest}"]
    if reset:
        args += ["+", "reset"]
    total = len(sources)
    copied = 0
    if progress:
        progress(0, total)

    def on_line(line: str) -> None:
        nonlocal copied
        if line.startswith("cp "):
            copied += 1
            if progress:
                progress(copied, total)

    mpremote(port, args, on_line=on_line)
    return total
