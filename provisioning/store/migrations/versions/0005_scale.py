"""Scale-out: shared token buckets, encrypted private signing keys, change notifications.

- `rate_buckets`: the token buckets that several service instances on one PostgreSQL database
  share (auth/ratelimit.py `SharedBuckets`); unused on SQLite.
- `signing_keys.private_key_enc`: the private key, AES-256-GCM under the key-encryption key each
  instance reads from its data directory or PARK_KEK (auth/kek.py); never a plain row.
- PostgreSQL only: triggers that `pg_notify` every listening instance when a client's
  credentials or status change and when the key set changes (auth/listen.py), so revocation
  and rotation reach all instances at once instead of after a cache TTL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from provisioning.store.migrations.columns import epoch

revision = "0005"
down_revision = "0004"

CLIENTS_CHANNEL = "parkfleet_clients"
KEYS_CHANNEL = "parkfleet_keys"

_PG_UP = f"""
CREATE FUNCTION parkfleet_client_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{CLIENTS_CHANNEL}', COALESCE(NEW.client_id, OLD.client_id));
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER parkfleet_client_changed AFTER UPDATE OR DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION parkfleet_client_changed();
CREATE FUNCTION parkfleet_keys_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{KEYS_CHANNEL}', '');
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER parkfleet_keys_changed AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION parkfleet_keys_changed();
"""

_PG_DOWN = """
DROP TRIGGER parkfleet_keys_changed ON signing_keys;
DROP FUNCTION parkfleet_keys_changed();
DROP TRIGGER parkfleet_client_changed ON clients;
DROP FUNCTION parkfleet_client_changed();
"""


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.String(160), primary_key=True),
        sa.Column("level", sa.Double(), nullable=False),
        epoch("updated_at"),
        # How many tokens the last take granted (one round trip: the UPSERT returns it).
        sa.Column("granted", sa.Integer(), nullable=False),
    )
    with op.batch_alter_table("signing_keys") as batch:
        batch.add_column(sa.Column("private_key_enc", sa.LargeBinary(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_UP)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_DOWN)
    with op.batch_alter_table("signing_keys") as batch:
        batch.drop_column("private_key_enc")
    op.drop_table("rate_buckets")
