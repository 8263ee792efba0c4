"""Occupancy rollup for lot history, filled from the readings already stored.

Frozen like every migration: it carries its own copy of the fill as the rollup was at this
revision (the service's `ingest.history.backfill` may change later; this must not).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from provisioning.store.migrations.columns import epoch

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "occupancy_rollup",
        sa.Column("lot", sa.String(64), primary_key=True),
        sa.Column("res", sa.Integer(), primary_key=True),
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("bucket", sa.BigInteger(), primary_key=True),
        sa.Column("cars", sa.Integer(), nullable=False),
        epoch("at"),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sqlite_with_rowid=False,
    )
    backfill(op.get_bind())


# The rollup's bucket widths, s, and its columns, at this revision.
_RESOLUTIONS = (60, 300, 3600)
_COLUMNS = ("lot", "res", "device_id", "bucket", "cars", "at", "seq")


def backfill(conn: sa.Connection) -> None:
    """Fill the rollup from `readings`: the finest width from the readings, each wider one from
    the one before it (the last reading of an hour is the last of its last non-empty 5-minute
    bucket). Tests and `tools/bench/history.py` run this very function."""
    postgresql = conn.dialect.name == "postgresql"
    source = "SELECT lot, device_id, cars, COALESCE(ts, received_at) AS at, seq FROM readings"
    for res in _RESOLUTIONS:
        if postgresql:
            bucket = f"CAST(FLOOR(at / {res}) AS BIGINT) * {res}"
            select = (
                f"SELECT DISTINCT ON (lot, device_id, bucket) lot, {res}, device_id, bucket, "  # noqa: S608
                f"cars, at, seq FROM (SELECT lot, device_id, {bucket} AS bucket, cars, at, seq "
                f"FROM ({source}) src) b ORDER BY lot, device_id, bucket, at DESC, seq DESC"
            )
        else:
            # SQLite's CAST truncates: FLOOR for the positive times of readings. With one
            # MAX() aggregate, SQLite takes the bare columns (cars, seq) from the row holding
            # the maximum (https://sqlite.org/lang_select.html#bareagg).
            bucket = f"CAST(at / {res} AS INTEGER) * {res}"
            select = (
                f"SELECT lot, {res}, device_id, {bucket} AS bucket, cars, MAX(at), seq "  # noqa: S608
                f"FROM ({source}) src GROUP BY lot, device_id, bucket"
            )
        # Constants of this module only; no input reaches this text.
        conn.exec_driver_sql(f"INSERT INTO occupancy_rollup ({', '.join(_COLUMNS)}) {select}")
        source = (
            "SELECT lot, device_id, cars, at, seq FROM occupancy_rollup "  # noqa: S608
            f"WHERE res = {res}"
        )


def downgrade() -> None:
    op.drop_table("occupancy_rollup")
