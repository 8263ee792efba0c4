"""Crash reports and vitals per board, and phased rollouts with health thresholds."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from provisioning.store.migrations.columns import BigId, epoch

revision = "0009"
down_revision = "0008"

_ROLLOUT_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("phases", sa.JSON()),
    ("phase", sa.Integer()),
    ("phase_started_at", sa.Double()),
    ("max_crash_rate", sa.Double()),
    ("min_online", sa.Double()),
    ("parallel", sa.Integer()),
    ("from_versions", sa.JSON()),
)


def upgrade() -> None:
    op.create_table(
        "crash_reports",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("clients.client_id"), nullable=False),
        epoch("at"),
        sa.Column("version", sa.String(32), nullable=True),
        sa.Column("running", sa.String(32), nullable=True),
        sa.Column("cause", sa.String(16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("traceback", sa.Text(), nullable=False),
    )
    op.create_index("ix_crash_reports_device_at", "crash_reports", ["device_id", "at"])
    op.create_index("ix_crash_reports_at", "crash_reports", ["at"])
    op.create_table(
        "vitals",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("clients.client_id"), nullable=False),
        epoch("at"),
        sa.Column("version", sa.String(32), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
    )
    op.create_index("ix_vitals_device_at", "vitals", ["device_id", "at"])
    op.create_index("ix_vitals_at", "vitals", ["at"])
    # Nullable: a rollout started before phases reads as two phases (canaries, then the rest).
    for name, kind in _ROLLOUT_COLUMNS:
        op.add_column("rollouts", sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    # batch mode: SQLite drops a column by copying the table (alembic does it).
    with op.batch_alter_table("rollouts") as batch:
        for name, _kind in reversed(_ROLLOUT_COLUMNS):
            batch.drop_column(name)
    op.drop_table("vitals")
    op.drop_table("crash_reports")
