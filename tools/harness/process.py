"""What the launchers of servers share: a log file, start and stop, use as a context manager.

`Logged` is any server that writes a log and is started and stopped (PostgreSQL through
`pg_ctl`); `ChildProcess` one run as our own child process, its output in that log, ready once
it listens on its ports.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from tools.harness.net import wait_for_port


class Logged:
    """A server with a log file at `log_path`; `with` starts it and stops it."""

    log_path: Path

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class ChildProcess(Logged):
    """A server in a child process; stdout and stderr go to `log_path`."""

    proc: subprocess.Popen[bytes] | None = None

    def _spawn(
        self,
        what: str,
        argv: Sequence[str],
        ports: Sequence[int],
        timeout: float = 10,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """Start `argv` and wait until it listens on every port of `ports`; if it does not
        within `timeout` s each, stop it and raise RuntimeError with its log."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd
            )
        try:
            for port in ports:
                wait_for_port(port, timeout=timeout)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"{what} did not start:\n{self.log()}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        """`sig` (SIGTERM: a clean shutdown), then SIGKILL if it has not ended in `timeout` s."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
