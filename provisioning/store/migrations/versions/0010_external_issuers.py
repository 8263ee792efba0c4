"""Devices registered in an external authorization server: the issuer that vouches for them.

A device with an `issuer` has no secret here (`secret_hash` stays NULL, as the column already
allows): its credentials live in that server, and its tokens are that issuer's.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("issuer", sa.String(512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("issuer")
