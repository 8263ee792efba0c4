"""Occupancy rollup for lot history, filled from the readings already stored."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from provisioning.service.lots.history import backfill
from provisioning.store.migrations.columns import epoch

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "occupancy_rollup",
        sa.Column("lot", sa.String(64), primary_key=True),
        sa.Column("res", sa.Integer(), primary_key=True),
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("bucket", sa.BigInteger(), primary_key=True),
        sa.Column("cars", sa.Integer(), nullable=False),
        epoch("at"),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sqlite_with_rowid=False,
    )
    backfill(op.get_bind())


def downgrade() -> None:
    op.drop_table("occupancy_rollup")
