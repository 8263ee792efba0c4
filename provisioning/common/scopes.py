"""Audiences (RFC 8707 resource indicators), scopes (RFC 6749 §3.3) and kinds of client: the
names both sides of the wire use. Which kind may be granted which scope is the service's rule
(`provisioning/service/auth/scopes.py`)."""

from __future__ import annotations

INGEST_AUDIENCE = "parkfleet-ingest"
ADMIN_AUDIENCE = "parkfleet-admin"
AUDIENCES: tuple[str, ...] = (INGEST_AUDIENCE, ADMIN_AUDIENCE)

COUNTS_WRITE = "counts:write"
COUNTS_READ = "counts:read"
DEVICES_ADMIN = "devices:admin"
RELEASES_READ = "releases:read"  # a board downloads signed agent releases
ALL_SCOPES: tuple[str, ...] = (COUNTS_WRITE, COUNTS_READ, DEVICES_ADMIN, RELEASES_READ)

DEVICE = "device"
OPERATOR = "operator"
# An operator who may only read counts (the dashboard's viewers): no admin audience at all.
VIEWER = "viewer"
