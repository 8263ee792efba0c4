"""Driver-level SQL for the ingestion hot path, portable between SQLite and PostgreSQL.

A 500-row insert through SQLAlchemy's compiled `insert().values(...)` costs more than the insert
itself; the hot path sends plain SQL with `?` placeholders, rewritten once per dialect and
cached. Everything off the hot path uses SQLAlchemy Core.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, CursorResult


@lru_cache(maxsize=256)
def _for_dialect(template: str, paramstyle: str) -> str:
    # Our templates hold no literal '?' or '%', so a plain replace is safe.
    return template if paramstyle == "qmark" else template.replace("?", "%s")


@lru_cache(maxsize=64)
def values_insert(table: str, columns: tuple[str, ...], rows: int, suffix: str = "") -> str:
    """`INSERT INTO table (columns) VALUES (?, ...), ... <suffix>` for `rows` rows."""
    group = "(" + ", ".join("?" * len(columns)) + ")"
    # Table and column names are this package's constants, never input; values are parameters.
    names = ", ".join(columns)
    template = f"INSERT INTO {table} ({names}) VALUES {', '.join([group] * rows)}"  # noqa: S608
    return f"{template} {suffix}".rstrip()


def run(conn: Connection, template: str, params: Sequence[Any] = ()) -> CursorResult[Any]:
    """Execute `template` (with `?` placeholders) on `conn` in its dialect's paramstyle."""
    sql = _for_dialect(template, conn.dialect.paramstyle)
    return conn.exec_driver_sql(sql, tuple(params))


def is_postgresql(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"
