"""Audiences (RFC 8707 resource indicators) and the scopes each kind of client may ask for."""

from __future__ import annotations

INGEST_AUDIENCE = "parkfleet-ingest"
ADMIN_AUDIENCE = "parkfleet-admin"
AUDIENCES: tuple[str, ...] = (INGEST_AUDIENCE, ADMIN_AUDIENCE)

COUNTS_WRITE = "counts:write"
COUNTS_READ = "counts:read"
DEVICES_ADMIN = "devices:admin"
RELEASES_READ = "releases:read"  # a board downloads agent releases (issue 10)

DEVICE = "device"
OPERATOR = "operator"

# kind -> audience -> scopes a client of that kind may be granted on that audience.
ALLOWED: dict[str, dict[str, frozenset[str]]] = {
    DEVICE: {INGEST_AUDIENCE: frozenset({COUNTS_WRITE, RELEASES_READ})},
    OPERATOR: {
        ADMIN_AUDIENCE: frozenset({DEVICES_ADMIN}),
        INGEST_AUDIENCE: frozenset({COUNTS_READ}),
    },
}

ALL_SCOPES: tuple[str, ...] = (COUNTS_WRITE, COUNTS_READ, DEVICES_ADMIN, RELEASES_READ)
