"""What the verbs run on the server host share (`serve`, `keys ...`, `admin create`): the
database, opened and migrated, each failure one `ParkctlError` (settings come from
`config.from_flags`).

Imported only when such a verb runs: it brings the server stack (pydantic-settings, SQLAlchemy).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import inspect, make_url
from sqlalchemy.orm import Session, sessionmaker

from provisioning.common.errors import ParkctlError, first_line
from provisioning.service.auth.secrets import HASH_KEY_FILE
from provisioning.service.config import Settings
from provisioning.store.db import make_engine, migrate, session_factory


@contextmanager
def open_store(settings: Settings) -> Iterator[sessionmaker[Session]]:
    """The service's database, migrated to the newest schema; closed on exit."""
    try:
        # The hash key and keys live beside the SQLite file: the same directory as the service.
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        migrate(settings.db_url)
        engine = make_engine(settings.db_url)
    except Exception as error:  # noqa: BLE001 - any driver or file error: report it, not a traceback
        raise ParkctlError(f"cannot open the database: {first_line(error)}") from None
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()


def describe(settings: Settings) -> str:
    """The database and data directory, as an operator checks them (no password)."""
    url = make_url(settings.db_url).render_as_string(hide_password=True)
    return f"{url} (data dir {settings.data_dir})"


def missing_store(settings: Settings) -> str | None:
    """Why `settings` name no service's store yet (None when they do): a data directory
    without the secret-hash key the service makes at its first start, a SQLite file that is
    not there, or a database without the registry's tables. Looked at without creating
    anything."""
    if not (settings.data_dir / HASH_KEY_FILE).is_file():
        return f"{settings.data_dir} holds no {HASH_KEY_FILE}"
    url = make_url(settings.db_url)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).is_file()):
        return f"there is no database file {url.database}"
    try:
        engine = make_engine(settings.db_url)
        try:
            has_registry = inspect(engine).has_table("clients")
        finally:
            engine.dispose()
    except Exception as error:  # noqa: BLE001 - any driver error: report it, not a traceback
        raise ParkctlError(f"cannot open the database: {first_line(error)}") from None
    return None if has_registry else "the database has no parkfleet tables"
