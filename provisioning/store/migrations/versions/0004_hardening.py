"""Hardening: `clients.tokens_valid_after`, the revocation time of tokens issued before it.

Set by a zero-grace secret rotation and by disabling a client; the token verifier and the
introspection endpoint refuse tokens whose `iat` is earlier.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("tokens_valid_after", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("tokens_valid_after")
