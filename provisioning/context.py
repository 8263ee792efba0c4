"""What the service's components share: settings, the database and start/stop hooks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from provisioning.config import Settings


@dataclass
class ServiceContext:
    """Built once per app by `create_app`; each component adds a typed field for its state."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    on_startup: list[Callable[[], None]] = field(default_factory=list)
    on_shutdown: list[Callable[[], None]] = field(default_factory=list)
