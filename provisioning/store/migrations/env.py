"""Alembic environment: runs migrations on the URL set by `provisioning.store.db.migrate`."""

from __future__ import annotations

from alembic import context

from provisioning.store.db import make_engine
from provisioning.store.models import Base

config = context.config
engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
