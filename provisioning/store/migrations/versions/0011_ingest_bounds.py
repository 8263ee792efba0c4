"""Ingest bounds: each board's suspect seq (a jump waiting for the next reading to confirm it),
a gate board's lane credit and counter faults, and the posts refused for the per-device rate."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from provisioning.store.migrations.columns import epoch

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    with op.batch_alter_table("device_state") as batch:
        batch.add_column(sa.Column("seq_suspect", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("g_suspect", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("g_credit_in", sa.Double(), nullable=True))
        batch.add_column(sa.Column("g_credit_out", sa.Double(), nullable=True))
        batch.add_column(epoch("g_credit_at", nullable=True))
        batch.add_column(sa.Column("g_faults", sa.Integer(), nullable=True))
        batch.add_column(epoch("g_fault_at", nullable=True))
        batch.add_column(sa.Column("refused", sa.BigInteger(), nullable=True))
        batch.add_column(epoch("refused_at", nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device_state") as batch:
        batch.drop_column("refused_at")
        batch.drop_column("refused")
        batch.drop_column("g_fault_at")
        batch.drop_column("g_faults")
        batch.drop_column("g_credit_at")
        batch.drop_column("g_credit_out")
        batch.drop_column("g_credit_in")
        batch.drop_column("g_suspect")
        batch.drop_column("seq_suspect")
