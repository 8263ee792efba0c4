"""What the admin API accepts and returns (the rules for lot ids, names and MACs: `rules`).

One module for both sides: the service validates with the same rules, FastAPI parses request bodies
with these models, and `AdminClient` parses responses into the same models. Secrets travel as
`SecretStr` so a stray `print()` or traceback in the fleet tool shows `**********`; only the JSON
sent over the wire (and printed by `--json`) carries the value.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    WithJsonSchema,
    field_serializer,
)

from provisioning.registry.rules import check_lot, check_name, normalise_mac

Lot = Annotated[str, AfterValidator(check_lot)]
Name = Annotated[str, AfterValidator(check_name)]
Mac = Annotated[str, AfterValidator(normalise_mac)]


class _Body(BaseModel):
    # An unknown field is a typo the operator wants to hear about, not silently ignore.
    model_config = ConfigDict(extra="forbid")


class DeviceCreate(_Body):
    lot: Lot
    name: Name
    mac: Mac | None = None


class DeviceUpdate(_Body):
    lot: Lot | None = None
    name: Name | None = None


class RotateSecret(_Body):
    # How long the old secret keeps working; absent = the server's PARK_SECRET_GRACE_S,
    # 0 = revoke it now (a leaked secret).
    grace_s: int | None = Field(default=None, ge=0, le=90 * 86400)


class Reading(BaseModel):
    """The device's latest reading (highest seq) as the ingestion API stored it."""

    seq: int
    cars: int
    ts: float | None  # the board's clock, if it had one
    received_at: float | None  # the server's clock


class Device(BaseModel):
    """A registered board. Times are epoch seconds, like JWT `iat`/`exp`."""

    client_id: str
    lot: str
    name: str
    mac: str | None
    enabled: bool
    created_at: float
    updated_at: float
    last_seen_at: float | None = None
    reading: Reading | None = None
    health: dict[str, Any] | None = None
    health_at: float | None = None
    # The agent: version it runs, target version, update state and its reason (issue 10).
    agent: dict[str, Any] | None = None


# A response field (pydantic would describe SecretStr as a write-only password input).
ShownSecret = Annotated[
    SecretStr,
    WithJsonSchema({"type": "string", "description": "The client secret, shown only once."}),
]


class _WithSecret(BaseModel):
    client_secret: ShownSecret

    @field_serializer("client_secret", when_used="json")
    def _reveal(self, value: SecretStr) -> str:
        # JSON is what goes over the wire or to `--json`: the one place the secret is shown.
        return value.get_secret_value()


class DeviceCreated(Device, _WithSecret):
    """201 body of POST /admin/devices: the device plus its secret, shown this once."""


class SecretRotated(_WithSecret):
    """Body of POST /admin/devices/{id}/rotate-secret."""

    client_id: str
    # Until when the previous secret is still accepted; None: it no longer works.
    previous_secret_expires_at: float | None


class DevicePage(BaseModel):
    items: list[Device]
    next_cursor: str | None  # pass as ?cursor= for the next page; None: this was the last


class AuditEntry(BaseModel):
    id: int
    at: float
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditEntry]  # newest first
    next_cursor: str | None


class ApiError(BaseModel):
    """Every admin API error body: the RFC 6749 §5.2 shape the token endpoint uses too."""

    error: str  # invalid_request, not_found, conflict, invalid_token, insufficient_scope
    error_description: str
    client_id: str | None = None  # on a MAC conflict: the device that already has the MAC
