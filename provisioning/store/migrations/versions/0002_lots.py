"""Lots: name, optional capacity and a label."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from provisioning.store.migrations.columns import epoch

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "lots",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("label", sa.String(128), nullable=False),
        epoch("created_at"),
        epoch("updated_at"),
    )


def downgrade() -> None:
    op.drop_table("lots")
