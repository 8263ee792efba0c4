"""Initial schema: clients, signing keys, audit log, readings, device state, MQTT outbox."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from provisioning.store.migrations.columns import BigId, epoch

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("lot", sa.String(64), nullable=True),
        sa.Column("mac", sa.String(17), nullable=True, unique=True),
        sa.Column("secret_hash", sa.String(128), nullable=True),
        sa.Column("previous_secret_hash", sa.String(128), nullable=True),
        epoch("previous_secret_expires_at", nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        epoch("created_at"),
        epoch("updated_at"),
        epoch("deleted_at", nullable=True),
    )
    op.create_index("ix_clients_lot", "clients", ["lot"])
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("alg", sa.String(16), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        epoch("created_at"),
        epoch("activated_at", nullable=True),
        epoch("retire_after", nullable=True),
    )
    op.create_index("ix_signing_keys_status", "signing_keys", ["status"])
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        epoch("at"),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(48), nullable=False),
        sa.Column("target", sa.String(64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_target_at", "audit_log", ["target", "at"])
    op.create_table(
        "readings",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("clients.client_id"), nullable=False),
        sa.Column("lot", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("cars", sa.Integer(), nullable=False),
        epoch("ts", nullable=True),
        epoch("received_at"),
        sa.UniqueConstraint("device_id", "seq", name="uq_readings_device_seq"),
    )
    op.create_table(
        "device_state",
        sa.Column("device_id", sa.String(64), sa.ForeignKey("clients.client_id"), primary_key=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=True),
        sa.Column("cars", sa.Integer(), nullable=True),
        epoch("ts", nullable=True),
        epoch("received_at", nullable=True),
        epoch("last_seen_at", nullable=True),
        sa.Column("health", sa.JSON(), nullable=True),
        epoch("health_at", nullable=True),
    )
    op.create_table(
        "mqtt_outbox",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("retain", sa.Boolean(), nullable=False),
        epoch("created_at"),
    )


def downgrade() -> None:
    for table in ("mqtt_outbox", "device_state", "readings", "audit_log", "signing_keys"):
        op.drop_table(table)
    op.drop_table("clients")
