"""`parkctl` in a child process from the repository root, as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys

from tools.harness.services import REPO


def parkctl(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float | None = 120,
    capture: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `parkctl ARGS` (`python -m provisioning`); never raises for its exit status. Without
    `env`, this environment with wide Rich tables (whole messages on one line)."""
    return subprocess.run(
        [sys.executable, "-m", "provisioning", *args],
        capture_output=capture,
        text=True,
        env=env or {**os.environ, "COLUMNS": "200"},
        timeout=timeout,
        cwd=REPO,
        check=False,
    )
