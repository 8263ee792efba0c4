"""Engines, sessions and schema migrations for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """Map plain `postgresql://` to the psycopg 3 driver this package ships."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


SYNCHRONOUS = ("FULL", "NORMAL")


def _sqlite_pragmas(synchronous: str, dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the single writer. FULL syncs the WAL at every commit, so an
    # acknowledged reading (which the board then deletes from its spool) survives a power cut;
    # NORMAL only survives a process crash. The group commit (ingest/commit.py) shares one
    # sync among the posts of a loop turn; `make bench` measures what FULL costs.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous}")  # one of SYNCHRONOUS, checked
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str, synchronous: str = "FULL") -> Engine:
    """An engine for `url`; for SQLite the file's directory is created (owner-only) and the
    database and its `-wal`/`-shm` files are owner-only too."""
    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}")
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _owner_only(Path(parsed.database))
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", functools.partial(_sqlite_pragmas, synchronous))
        return engine
    # At most 30 connections an instance, as before, but 20 of them kept: with 10 kept, posts
    # arriving together opened and closed an overflow connection each (a backend fork, a few ms
    # of PostgreSQL's CPU). Pre-ping: a connection a restart broke is never handed out.
    return create_engine(url, pool_size=20, max_overflow=10, pool_pre_ping=True)


def _owner_only(database: Path) -> None:
    """Create the SQLite file 0600 before SQLite does (its `-wal` and `-shm` files take the
    database's mode), and tighten one an older version left 0644."""
    database.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(database, os.O_CREAT | os.O_WRONLY, 0o600))
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)


# The database cannot be reached or answer now (stopped, restarting, a connection it cut, the
# pool exhausted, SQLite locked past its busy timeout), as opposed to a fault in the request or
# in our SQL. SQLAlchemy wraps the driver's errors on its own paths; the hot paths (store/sql.py)
# run the drivers directly, so their errors arrive unwrapped.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.DisconnectionError,
    exc.TimeoutError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlite3.OperationalError,
)
# A transaction PostgreSQL rolled back to break a deadlock or a serialization conflict: nothing of
# it was stored, and running it again may well succeed.
CONFLICT_ERRORS: tuple[type[Exception], ...] = (
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
)
# What a caller catches to ask `unavailable`: every error of SQLAlchemy and of both drivers.
DATABASE_ERRORS: tuple[type[Exception], ...] = (exc.SQLAlchemyError, psycopg.Error, sqlite3.Error)


def unavailable(error: BaseException) -> bool:
    """Whether `error` says the database is unavailable for now (answer 503 and retry), not that
    a statement is wrong (a bug: 500)."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, UNAVAILABLE_ERRORS)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' would be read as interpolation by configparser.
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest schema (idempotent)."""
    url = normalise_url(url)
    make_engine(url).dispose()  # creates the SQLite directory if needed
    command.upgrade(alembic_config(url), "head")
