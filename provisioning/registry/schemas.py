"""What the admin API accepts and returns, and the rules for lot ids, names and MACs.

One module for both sides: the service validates with these rules, FastAPI parses request bodies
with these models, and `AdminClient` parses responses into the same models. Secrets travel as
`SecretStr` so a stray `print()` or traceback in the fleet tool shows `**********`; only the JSON
sent over the wire (and printed by `--json`) carries the value.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictInt,
    WithJsonSchema,
    field_serializer,
    model_validator,
)

from provisioning.text import is_clean_text

LOT_MAX = 64  # clients.lot is String(64)
NAME_MAX = 128  # clients.name is String(128)

# Lot ids become MQTT topic levels (`parkfleet/lots/<lot>/...`): '/' would add a level, '+' and
# '#' are wildcards (MQTT 5.0 §4.7.1) and may not appear in a published topic. An allow-list is
# stricter than that and also keeps ids safe in URLs, file names and log lines.
_LOT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MAC_RE = re.compile(r"[0-9a-f]{2}([:-]?)[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}")


def check_lot(lot: str) -> str:
    """Return `lot` if it is a valid lot id, else raise `ValueError` saying why."""
    if not 1 <= len(lot) <= LOT_MAX:
        raise ValueError(f"lot must be 1 to {LOT_MAX} characters")
    if not _LOT_RE.fullmatch(lot):
        raise ValueError(
            "lot may contain only letters A-Z a-z, digits, '.', '_' and '-', and must start "
            "with a letter or digit (it is used as an MQTT topic level)"
        )
    return lot


def check_name(name: str) -> str:
    """Return `name` without surrounding blanks, or raise `ValueError` saying why."""
    name = name.strip()
    if not 1 <= len(name) <= NAME_MAX:
        raise ValueError(f"name must be 1 to {NAME_MAX} characters")
    # Cc/Cf: control and invisible format characters would corrupt tables and logs.
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise ValueError("name may not contain control characters")
    return name


def normalise_mac(mac: str) -> str:
    """`AA-BB-CC-DD-EE-FF`, `aabbccddeeff`, ... -> `aa:bb:cc:dd:ee:ff`; `ValueError` if not a
    unicast MAC-48 (a board's station address is never multicast, zero or broadcast)."""
    text = mac.strip().lower()
    if not _MAC_RE.fullmatch(text):
        raise ValueError("mac must be six hex octets, e.g. aa:bb:cc:dd:ee:ff")
    digits = text.replace(":", "").replace("-", "")
    octets = [digits[i : i + 2] for i in range(0, 12, 2)]
    if int(octets[0], 16) & 0x01:  # the I/G bit (IEEE 802 §8.2): group address
        raise ValueError("mac is a multicast or broadcast address, not a board's")
    if digits == "0" * 12:
        raise ValueError("mac 00:00:00:00:00:00 is not a board's address")
    return ":".join(octets)


Lot = Annotated[str, AfterValidator(check_lot)]
Name = Annotated[str, AfterValidator(check_name)]
Mac = Annotated[str, AfterValidator(normalise_mac)]


class _Body(BaseModel):
    # An unknown field is a typo the operator wants to hear about, not silently ignore.
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _clean_text(cls, data: Any) -> Any:
        # Once for every body and field: a lone surrogate or NUL cannot be stored (422).
        if isinstance(data, dict):
            for value in data.values():
                if isinstance(value, str) and not is_clean_text(value):
                    raise ValueError("text must be valid Unicode without NUL")
        return data


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
    # Strict: `true` is not a number of seconds (the OpenAPI document says integer).
    grace_s: StrictInt | None = Field(default=None, ge=0, le=90 * 86400)


class Reading(BaseModel):
    """The device's current reading (its newest by arrival) as the ingestion API stored it."""

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


class OperatorCreate(_Body):
    name: Name


class Operator(BaseModel):
    """An operator client: a person's or a script's key to the admin API."""

    client_id: str
    name: str
    enabled: bool
    created_at: float
    updated_at: float


class OperatorList(BaseModel):
    items: list[Operator]  # oldest first; operators are few, so one page


class OperatorCreated(_WithSecret):
    client_id: str
    name: str


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
