"""Gate boards: readings with cumulative in/out counters, each gate board's counter
state, and each lot's recount baseline.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from provisioning.store.migrations.columns import epoch

revision = "0006"
down_revision = "0005"

# The rollup's rows of a lot's baseline (frozen here: the service's constant may change).
_BASELINE_ID = "~baseline"


def upgrade() -> None:
    with op.batch_alter_table("readings") as batch:
        batch.alter_column("cars", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("gate_in", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("gate_out", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("device_state") as batch:
        batch.add_column(sa.Column("g_seq", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("g_in", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("g_out", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("g_total_in", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("g_total_out", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("g_ref_in", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("g_ref_out", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("g_series", sa.Integer(), nullable=True))
        batch.add_column(epoch("g_series_at", nullable=True))
    # A gate board's flows (in - out since the baseline) go past 2**31 with its 32-bit counters.
    with op.batch_alter_table("occupancy_rollup") as batch:
        batch.alter_column("cars", existing_type=sa.Integer(), type_=sa.BigInteger())
    op.create_table(
        "lot_baselines",
        sa.Column("lot", sa.String(64), primary_key=True),
        sa.Column("cars", sa.Integer(), nullable=False),
        epoch("since"),
        sa.Column("actor", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lot_baselines")
    op.execute(f"DELETE FROM occupancy_rollup WHERE device_id = '{_BASELINE_ID}'")  # noqa: S608
    with op.batch_alter_table("occupancy_rollup") as batch:
        batch.alter_column("cars", existing_type=sa.BigInteger(), type_=sa.Integer())
    with op.batch_alter_table("device_state") as batch:
        batch.drop_column("g_series_at")
        batch.drop_column("g_series")
        batch.drop_column("g_ref_out")
        batch.drop_column("g_ref_in")
        batch.drop_column("g_total_out")
        batch.drop_column("g_total_in")
        batch.drop_column("g_out")
        batch.drop_column("g_in")
        batch.drop_column("g_seq")
    op.execute("DELETE FROM readings WHERE cars IS NULL")
    with op.batch_alter_table("readings") as batch:
        batch.drop_column("gate_out")
        batch.drop_column("gate_in")
        batch.alter_column("cars", existing_type=sa.Integer(), nullable=False)
