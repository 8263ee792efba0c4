"""The audit log: who did what to whom, when. Callers pass no secrets; `detail` is checked."""

from __future__ import annotations

import time
from typing import Any

import orjson
from sqlalchemy import insert
from sqlalchemy.orm import Session

from provisioning.store import sql
from provisioning.store.models import AuditEvent

_FORBIDDEN_KEYS = frozenset({"client_secret", "secret", "password", "access_token", "token"})


def record(
    session: Session,
    actor: str,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add an audit event to `session` (committed with the caller's transaction)."""
    _check(action, detail)
    session.add(
        AuditEvent(at=time.time(), actor=actor, action=action, target=target, detail=detail)
    )


def _check(action: str, detail: dict[str, Any] | None) -> None:
    if detail and _FORBIDDEN_KEYS.intersection(detail):
        # A programming error, caught by tests: secrets never reach the audit log.
        raise ValueError(f"audit detail for {action} names a secret field")


def record_many(
    session: Session, events: list[tuple[str, str, str | None, dict[str, Any] | None]]
) -> None:
    """Insert many (actor, action, target, detail) events with one multi-row INSERT.

    For high-rate events (failed authentications): the ORM unit of work costs ~100 µs per row.
    """
    now = time.time()
    rows = []
    for actor, action, target, detail in events:
        _check(action, detail)
        rows.append(
            {"at": now, "actor": actor, "action": action, "target": target, "detail": detail}
        )
    if rows:
        session.execute(insert(AuditEvent), rows)


_COLUMNS = ("at", "actor", "action", "target", "detail")


def insert_many(
    tx: sql.Tx, events: list[tuple[str, str, str | None, dict[str, Any] | None]]
) -> None:
    """`record_many` on the hot path's DBAPI transaction (store/sql.py): token issuance, where
    SQLAlchemy's compiled multi-row insert costs more than the round trip. `detail` is stored as
    SQLAlchemy's JSON type reads it back: on SQLite its JSON text; on PostgreSQL the object
    itself, since the rows travel as one JSON document there (text would become a JSON string)."""
    now = time.time()
    params: list[Any] = []
    for actor, action, target, detail in events:
        _check(action, detail)
        value = detail if tx.postgresql or detail is None else orjson.dumps(detail).decode()
        params += (now, actor, action, target, value)
    if params:
        sql.insert_values(tx, AuditEvent.__tablename__, _COLUMNS, params)
