"""Dashboard sessions in the database, so every instance behind the load balancer sees them."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from provisioning.store.migrations.columns import epoch

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.create_table(
        "ui_sessions",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        epoch("created_at"),
        epoch("expires_at"),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("new_secret", sa.LargeBinary(), nullable=True),
    )
    op.create_index("ix_ui_sessions_client_id", "ui_sessions", ["client_id"])
    op.create_index("ix_ui_sessions_expires_at", "ui_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_table("ui_sessions")
