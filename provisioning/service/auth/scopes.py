"""Audiences (RFC 8707 resource indicators) and the scopes each kind of client may ask for."""

from __future__ import annotations

INGEST_AUDIENCE = "parkfleet-ingest"
ADMIN_AUDIENCE = "parkfleet-admin"
AUDIENCES: tuple[str, ...] = (INGEST_AUDIENCE, ADMIN_AUDIENCE)

COUNTS_WRITE = "counts:write"
COUNTS_READ = "counts:read"
DEVICES_ADMIN = "devices:admin"
RELEASES_READ = "releases:read"  # a board downloads signed agent releases

DEVICE = "device"
OPERATOR = "operator"
# An operator who may only read counts (the dashboard's viewers): no admin audience at all.
VIEWER = "viewer"

# kind -> audience -> scopes a client of that kind may be granted on that audience.
ALLOWED: dict[str, dict[str, frozenset[str]]] = {
    DEVICE: {INGEST_AUDIENCE: frozenset({COUNTS_WRITE, RELEASES_READ})},
    OPERATOR: {
        ADMIN_AUDIENCE: frozenset({DEVICES_ADMIN}),
        INGEST_AUDIENCE: frozenset({COUNTS_READ}),
    },
    VIEWER: {INGEST_AUDIENCE: frozenset({COUNTS_READ})},
}

ALL_SCOPES: tuple[str, ...] = (COUNTS_WRITE, COUNTS_READ, DEVICES_ADMIN, RELEASES_READ)

# RFC 7662 §4: only callers entitled to it may introspect tokens. Operators (and the resource
# servers run with an operator's credentials) are; a device is not: it could otherwise learn
# whether any token it found, an operator's admin token included, is live and what it may do.
INTROSPECTION_KINDS: frozenset[str] = frozenset({OPERATOR})
