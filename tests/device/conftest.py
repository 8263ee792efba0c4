"""Fixtures of the device tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tools.harness.agent import Backend


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """One service (default token lifetime) shared by a module's scenarios that need nothing
    special (test_ota.py has its own, with release keys)."""
    b = Backend(tmp_path_factory.mktemp("svc")).start()
    yield b
    b.stop()
