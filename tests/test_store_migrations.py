"""Migrations produce exactly the models' schema, on SQLite and PostgreSQL, idempotently."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from provisioning.store.db import make_engine, migrate
from provisioning.store.models import Base


def test_migrations_match_models_and_are_idempotent(db_url: str) -> None:
    migrate(db_url)
    migrate(db_url)  # a second start changes nothing
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            assert diff == []
            revision = MigrationContext.configure(conn).get_current_revision()
            assert revision is not None
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'wal.db'}"
    migrate(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()
