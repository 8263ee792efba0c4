"""Agent releases (issue 10): signed bundles, their files, boards' versions and states, rollouts.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("version", sa.String(32), primary_key=True),
        sa.Column("manifest", sa.LargeBinary(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("rollback", sa.Boolean(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
    )
    op.create_table(
        "release_files",
        sa.Column("version", sa.String(32), sa.ForeignKey("releases.version"), primary_key=True),
        sa.Column("path", sa.String(64), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "device_agent",
        sa.Column("device_id", sa.String(64), sa.ForeignKey("clients.client_id"), primary_key=True),
        sa.Column("version", sa.String(32), nullable=True),
        sa.Column("target", sa.String(32), nullable=True),
        sa.Column("state", sa.String(16), nullable=True),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=True),
    )
    op.create_table(
        "rollouts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("version", sa.String(32), sa.ForeignKey("releases.version"), nullable=False),
        sa.Column("devices", sa.JSON(), nullable=False),
        sa.Column("canaries", sa.JSON(), nullable=False),
        sa.Column("canary_wait_s", sa.Double(), nullable=False),
        sa.Column("silence_s", sa.Double(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("canaries_ok_at", sa.Double(), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rollouts")
    op.drop_table("device_agent")
    op.drop_table("release_files")
    op.drop_table("releases")
