"""`parkctl` and the other command-line tools (the demo) in a child process from the repository
root, as an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys

from tools.harness.services import REPO


def python_module(
    module: str,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float | None = 120,
    capture: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m MODULE ARGS`; never raises for its exit status. Without `env`, this
    environment with wide Rich tables (whole messages on one line)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=capture,
        text=True,
        env=env or {**os.environ, "COLUMNS": "200"},
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def parkctl(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float | None = 120,
    capture: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `parkctl ARGS` (`python -m provisioning`), as `python_module` does."""
    return python_module("provisioning", *args, env=env, timeout=timeout, capture=capture)
