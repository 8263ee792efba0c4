"""Agent releases: signed bundles, their files, boards' versions and states, rollouts."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from provisioning.store.migrations.columns import BigId, epoch

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("version", sa.String(32), primary_key=True),
        sa.Column("manifest", sa.LargeBinary(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("rollback", sa.Boolean(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        epoch("created_at"),
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
        epoch("updated_at", nullable=True),
    )
    op.create_table(
        "rollouts",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("version", sa.String(32), sa.ForeignKey("releases.version"), nullable=False),
        sa.Column("devices", sa.JSON(), nullable=False),
        sa.Column("canaries", sa.JSON(), nullable=False),
        sa.Column("canary_wait_s", sa.Double(), nullable=False),
        sa.Column("silence_s", sa.Double(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(200), nullable=True),
        epoch("started_at"),
        epoch("canaries_ok_at", nullable=True),
        epoch("updated_at"),
    )


def downgrade() -> None:
    op.drop_table("rollouts")
    op.drop_table("device_agent")
    op.drop_table("release_files")
    op.drop_table("releases")
