"""The audit log: who did what to whom, when. Callers pass no secrets; `detail` is checked."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session

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
    if detail and _FORBIDDEN_KEYS.intersection(detail):
        # A programming error, caught by tests: secrets never reach the audit log.
        raise ValueError(f"audit detail for {action} names a secret field")
    session.add(
        AuditEvent(at=time.time(), actor=actor, action=action, target=target, detail=detail)
    )
