"""The scopes each kind of client may ask for, per audience (the names: common/scopes.py)."""

from __future__ import annotations

from provisioning.common.scopes import (
    ADMIN_AUDIENCE,
    COUNTS_READ,
    COUNTS_WRITE,
    DEVICE,
    DEVICES_ADMIN,
    INGEST_AUDIENCE,
    OPERATOR,
    RELEASES_READ,
    VIEWER,
)

# kind -> audience -> scopes a client of that kind may be granted on that audience.
ALLOWED: dict[str, dict[str, frozenset[str]]] = {
    DEVICE: {INGEST_AUDIENCE: frozenset({COUNTS_WRITE, RELEASES_READ})},
    OPERATOR: {
        ADMIN_AUDIENCE: frozenset({DEVICES_ADMIN}),
        INGEST_AUDIENCE: frozenset({COUNTS_READ}),
    },
    VIEWER: {INGEST_AUDIENCE: frozenset({COUNTS_READ})},
}

# RFC 7662 §4: only callers entitled to it may introspect tokens. Operators (and the resource
# servers run with an operator's credentials) are; a device is not: it could otherwise learn
# whether any token it found, an operator's admin token included, is live and what it may do.
INTROSPECTION_KINDS: frozenset[str] = frozenset({OPERATOR})
