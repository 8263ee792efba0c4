"""Hardening: `clients.tokens_valid_after`, the revocation time of tokens issued before it.

Set by a zero-grace secret rotation and by disabling a client; the token verifier and the
introspection endpoint refuse tokens whose `iat` is earlier.
"""

from __future__ import annotations

from alembic import op

from provisioning.store.migrations.columns import epoch

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(epoch("tokens_valid_after", nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("tokens_valid_after")
