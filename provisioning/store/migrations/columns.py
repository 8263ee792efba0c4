"""Column kinds the migrations share, written once as `store/models.py` has them."""

from __future__ import annotations

import sqlalchemy as sa

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for millions of rows.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def epoch(name: str, nullable: bool = False) -> sa.Column[float]:
    """A time: Unix epoch seconds as a double, as every time in the schema is."""
    return sa.Column(name, sa.Double(), nullable=nullable)
