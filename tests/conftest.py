"""Shared fixtures: databases (SQLite and PostgreSQL), the real service process, binaries."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tools.harness.server import ServiceProcess
from tools.harness.services import ServiceMissing, micropython_binary, postgres_database


def services_required() -> bool:
    """Under CI a missing system service fails its tests instead of skipping them."""
    return os.environ.get("CI") == "true" or os.environ.get("PARK_REQUIRE_SERVICES") == "1"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A `ServiceMissing` from the harness: a skip with the reason on a user's machine, a
    failure naming the service under CI (so CI never skips silently)."""
    report = yield
    if call.excinfo is None or not call.excinfo.errisinstance(ServiceMissing):
        return report
    reason = str(call.excinfo.value)
    if services_required():
        report.longrepr = f"required service missing under CI: {reason}"
    else:
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {reason}")
    return report


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
