"""Shared fixtures: databases (SQLite and PostgreSQL), the real service process, binaries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServiceProcess
from tests.support.services import micropython_binary, postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each storage test runs on both the embedded default and the scale-out store."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'park.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcess]:
    """The real service on SQLite, in its own process on a free port."""
    with ServiceProcess(tmp_path / "data") as proc:
        yield proc


@pytest.fixture(scope="session")
def micropython() -> str:
    return micropython_binary()
