"""The one error type of the CLI: `main()` turns it into a message and an exit code."""

from __future__ import annotations


class ParkctlError(Exception):
    """A failure the operator can act on; `message` is shown as-is, never with a secret."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def first_line(error: BaseException) -> str:
    """`Type: first line of the message`: a library's error, short enough for one line."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
