"""What the verbs run on the server host share (`serve`, `keys ...`, `admin create`): the
settings from flags and `PARK_*` variables, and the database, each failure one `ParkctlError`.

Imported only when such a verb runs: it brings the server stack (pydantic-settings, SQLAlchemy).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from provisioning.config import Settings
from provisioning.errors import ParkctlError, first_line
from provisioning.store.db import make_engine, migrate, session_factory


def settings_from_flags(given: Mapping[str, Any]) -> Settings:
    """Flags beat PARK_* variables, which beat defaults: `given` holds the flags given (None
    is "not given"). A bad value is one message naming the setting, not a traceback."""
    try:
        return Settings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as error:
        problems = "; ".join(
            f"{_name(e['loc'])} (flag or PARK_{_name(e['loc']).upper()}): {e['msg']}"
            for e in error.errors()
        )
        raise ParkctlError(f"invalid setting: {problems}") from None


def _name(loc: tuple[int | str, ...]) -> str:
    return str(loc[0]) if loc else "settings"


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
