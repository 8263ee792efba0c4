"""store/sql.py `HeldConnection`: a read-only one spares PostgreSQL the transaction round trips
and hands its connection back to the pool as the pool hands them out."""

from __future__ import annotations

from provisioning.store import sql
from provisioning.store.db import make_engine, migrate


def test_a_read_only_held_connection_reads_outside_a_transaction(db_url: str) -> None:
    migrate(db_url)
    engine = make_engine(db_url)
    try:
        held = sql.HeldConnection(engine, read_only=True)
        assert held.run(lambda tx: sql.run(tx, "SELECT 1")) == [(1,)]
        held.run(lambda tx: sql.run(tx, "SELECT 1"))
        driver = held._raw.driver_connection
        if engine.dialect.name == "postgresql":
            assert driver.autocommit is True  # no BEGIN/COMMIT around the read
        held.close()
        assert getattr(driver, "autocommit", False) is not True  # as the pool hands them out
        writer = sql.HeldConnection(engine)
        writer.run(lambda tx: sql.run(tx, "SELECT 1"))
        assert getattr(writer._raw.driver_connection, "autocommit", False) is not True
        writer.close()
    finally:
        engine.dispose()
