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


def _per_board(table: str, *columns: sa.Column[Any]) -> None:
    """An append-only table of what boards report: id, device, time of receipt, the version
    it concerns, then `columns`; indexed by device and time, and by time."""
    op.create_table(
        table,
        sa.Column("id", BigId, primary_key=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("clients.client_id"), nullable=False),
        epoch("at"),
        sa.Column("version", sa.String(32), nullable=True),
        *columns,
    )
    op.create_index(f"ix_{table}_device_at", table, ["device_id", "at"])
    op.create_index(f"ix_{table}_at", table, ["at"])


def upgrade() -> None:
    _per_board(
        "crash_reports",
        sa.Column("running", sa.String(32), nullable=True),
        sa.Column("cause", sa.String(16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("traceback", sa.Text(), nullable=False),
    )
    _per_board("vitals", sa.Column("data", sa.JSON(), nullable=False))
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
