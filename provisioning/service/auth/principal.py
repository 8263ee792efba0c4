"""Who a verified access token speaks for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Principal:
    """The client behind a verified token: `client_id` is the token's `sub` (built-in), or
    the external client ID (auth/external.py)."""

    client_id: str
    kind: str  # scopes.DEVICE | scopes.OPERATOR | scopes.VIEWER
    audience: str
    scopes: frozenset[str]
    lot: str | None
    claims: dict[str, Any]
    issuer: str | None = None  # a trusted external issuer's URL; None: the built-in server
