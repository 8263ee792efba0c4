"""Fixtures for the simulated board: the real esptool and mpremote run against it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tools.harness.services import micropython_binary
from tools.simboard import SimBoard

REPO = Path(__file__).resolve().parents[3]
Run = Callable[..., subprocess.CompletedProcess[str]]


def _run(module: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def esptool(url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real esptool CLI on the board's port."""
    return _run("esptool", "--port", url, *args, timeout=timeout)


def mpremote(url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real mpremote CLI on the board's port."""
    return _run("mpremote", "connect", url, *args, timeout=timeout)


@pytest.fixture
def board_factory(tmp_path: Path) -> Iterator[Callable[..., SimBoard]]:
    """Start simulated boards (stopped at the end); keyword arguments as for SimBoard."""
    micropython_binary()  # the board's MicroPython mode needs the Unix port
    boards: list[SimBoard] = []

    def make(name: str = "board", **kwargs: object) -> SimBoard:
        board = SimBoard(tmp_path / name, **kwargs)  # type: ignore[arg-type]
        boards.append(board.start())
        return board

    yield make
    for board in boards:
        board.stop()
