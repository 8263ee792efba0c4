"""`SimBoard`: run a simulated board in a child process from Python (tests, demo, bench)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from tools.simboard.repl import REPO


class SimBoard:
    """`python -m tools.simboard` in a child process; a context manager.

    `url` is the board's `socket://` port, `flash_path` its flash contents, `fs_dir` the
    MicroPython filesystem, `console_log` everything it printed in MicroPython mode. `env` adds
    environment variables for the board's MicroPython (e.g. the PARKSIM_* of tools/unixport).
    With `pty=True` the same line is also on the pty `pty` (esptool needs `--before no-reset`
    there).
    """

    def __init__(
        self,
        board_dir: Path | str,
        chip: str = "esp32",
        mac: str | None = None,
        fault: str | None = None,
        baud_limit: int | None = None,
        flash_size: str = "4MB",
        vanish_seconds: float = 10.0,
        env: dict[str, str] | None = None,
        pty: bool = False,
        ready_timeout: float = 20.0,
    ) -> None:
        self.board_dir = Path(board_dir)
        self.chip = chip
        self.flash_path = self.board_dir / "flash.bin"
        self.fs_dir = self.board_dir / "fs"
        self.console_log = self.board_dir / "console.log"
        self.log_path = self.board_dir / "simboard.log"
        self.url = ""
        self.pty: str | None = None  # the pty path when started with pty=True
        self.mac = mac or ""
        self._ready_file = self.board_dir / "ready.json"
        self._ready_timeout = ready_timeout
        self._env = {**os.environ, **(env or {})}
        self._args = [
            sys.executable,
            "-m",
            "tools.simboard",
            "--dir",
            str(self.board_dir),
            "--chip",
            chip,
            "--flash-size",
            flash_size,
            "--vanish-seconds",
            str(vanish_seconds),
            "--ready-file",
            str(self._ready_file),
            *(["--mac", mac] if mac else []),
            *(["--fault", fault] if fault else []),
            *(["--baud-limit", str(baud_limit)] if baud_limit else []),
            *(["--pty"] if pty else []),
        ]
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SimBoard:
        """Start the simulator and wait until it listens."""
        self.board_dir.mkdir(parents=True, exist_ok=True)
        self._ready_file.unlink(missing_ok=True)
        stderr = (self.board_dir / "simboard.stderr").open("ab")
        self._proc = subprocess.Popen(self._args, cwd=REPO, env=self._env, stderr=stderr)
        stderr.close()
        deadline = time.monotonic() + self._ready_timeout
        while not self._ready_file.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"simulated board did not start:\n{self.log()}")
            time.sleep(0.02)
        ready = json.loads(self._ready_file.read_text())
        self.url = ready["url"]
        self.pty = ready["pty"]
        self.mac = ready["mac"]
        return self

    def stop(self) -> None:
        """Stop the simulator (and the board's MicroPython with it)."""
        if self._proc and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc and self._proc.returncode != 0:
            # The simulator died without powering the board off: end its MicroPython (a session
            # leader, so its pid is its process group).
            app_pid = self.state().get("app_pid")
            if isinstance(app_pid, int):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(app_pid, signal.SIGKILL)
        self._proc = None

    def state(self) -> dict[str, object]:
        """`state.json`: mode ("bootloader", "micropython" or "unplugged"), url, app_pid."""
        try:
            return dict(json.loads((self.board_dir / "state.json").read_text()))
        except (OSError, ValueError):
            return {}

    def wait_for_mode(self, mode: str, timeout: float = 20.0) -> None:
        """Wait until the board is in `mode`, e.g. "micropython" after a reset or a replug."""
        deadline = time.monotonic() + timeout
        while self.state().get("mode") != mode:
            if time.monotonic() > deadline:
                raise TimeoutError(f"board not in {mode} mode after {timeout}s: {self.state()}")
            time.sleep(0.05)

    def console(self) -> str:
        """What the board printed in MicroPython mode so far."""
        if not self.console_log.exists():
            return ""
        return self.console_log.read_bytes().decode(errors="replace")

    def log(self) -> str:
        """The simulator's own event log (connections, resets, boots, faults)."""
        parts = [self.log_path, self.board_dir / "simboard.stderr"]
        return "".join(p.read_text(errors="replace") for p in parts if p.exists())

    def flash_bytes(self, offset: int, length: int) -> bytes:
        with self.flash_path.open("rb") as f:
            f.seek(offset)
            return f.read(length)

    def __enter__(self) -> SimBoard:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
