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


def test_sqlite_syncs_every_commit_by_default(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # An acknowledged reading must survive a power cut (FULL = 2).
    url = f"sqlite:///{tmp_path / 'full.db'}"
    migrate(url)
    for synchronous, expected in (("FULL", 2), ("NORMAL", 1)):
        engine = make_engine(url) if synchronous == "FULL" else make_engine(url, synchronous)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == expected
        engine.dispose()


def test_sqlite_files_are_owner_only_and_an_open_data_dir_is_reported(  # type: ignore[no-untyped-def]
    tmp_path, caplog
) -> None:
    # parkfleet.db and its -wal/-shm are owner-only (0600), not 0644.
    import logging
    import os

    from fastapi.testclient import TestClient

    from provisioning.service.app import create_app
    from provisioning.service.config import Settings

    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)  # whatever the umask
    (data / "parkfleet.db").touch(mode=0o644)
    os.chmod(data / "parkfleet.db", 0o644)  # as an older version left it
    caplog.set_level(logging.WARNING)
    with TestClient(create_app(Settings(data_dir=data))) as http:
        assert http.get("/healthz").status_code == 200
        files = sorted(p.name for p in data.glob("parkfleet.db*"))
        assert files == ["parkfleet.db", "parkfleet.db-shm", "parkfleet.db-wal"]
        for name in files:
            assert oct((data / name).stat().st_mode & 0o777) == "0o600", name
    assert any("readable by others" in r.getMessage() for r in caplog.records)
