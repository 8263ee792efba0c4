"""Run `parkctl` inside the test process: the real parser and handlers, the environment and the
on-disk token cache a real run sees, without paying a process start per command.

What `main()` adds around `run()` (an `error: ...` line and the exit code) happens here too, and
the exception is kept for tests that look at it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

from provisioning.common.errors import ParkctlError
from provisioning.parkctl.cli import report, run


@dataclass
class Invocation:
    """What one in-process `parkctl` run printed and how it ended."""

    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def invoke(args: list[str], env: Mapping[str, str] | None = None) -> Invocation:
    """`parkctl ARGS` with `env` as its whole environment (the test's if None)."""
    saved = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    exit_code = 0
    exception: BaseException | None = None
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        with redirect_stdout(out), redirect_stderr(err):
            try:
                run(args)
            except ParkctlError as error:
                exit_code, exception = report(error), error
            except SystemExit as done:  # --help
                exit_code = done.code if isinstance(done.code, int) else 1
            except Exception as error:  # noqa: BLE001 - a crash is a result the test shows
                exit_code, exception = 1, error
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return Invocation(exit_code, out.getvalue(), err.getvalue(), exception)
