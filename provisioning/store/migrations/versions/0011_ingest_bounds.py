"""Ingest bounds: each board's suspect seq (a jump waiting for the next reading to confirm it),
a gate board's lane credit and counter faults, and the posts refused for the per-device rate."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"

_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("seq_suspect", sa.BigInteger()),
    ("g_suspect", sa.BigInteger()),
    ("g_credit_in", sa.Double()),
    ("g_credit_out", sa.Double()),
    ("g_credit_at", sa.Double()),
    ("g_faults", sa.Integer()),
    ("g_fault_at", sa.Double()),
    ("refused", sa.BigInteger()),
    ("refused_at", sa.Double()),
)


def upgrade() -> None:
    with op.batch_alter_table("device_state") as batch:
        for name, kind in _COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device_state") as batch:
        for name, _kind in reversed(_COLUMNS):
            batch.drop_column(name)
