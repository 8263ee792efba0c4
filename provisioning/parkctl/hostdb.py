"""What the verbs run on the server host share (`serve`, `keys ...`, `admin create`): the
database, opened and migrated, each failure one `ParkctlError` (settings come from
`config.from_flags`).

Imported only when such a verb runs: it brings the server stack (pydantic-settings, SQLAlchemy).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session, sessionmaker

from provisioning.common.errors import ParkctlError, first_line
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
