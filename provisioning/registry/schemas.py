"""What the admin API accepts and returns, and the rules for lot ids, names and MACs.

One module for both sides: the service validates with these rules, FastAPI parses request bodies
with these models, and `AdminClient` parses responses into the same models. Secrets travel as
`SecretStr` so a stray `print()` or traceback in the fleet tool shows `**********`; only the JSON
sent over the wire (and printed by `--json`) carries the value.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StrictInt,
    WithJsonSchema,
    field_serializer,
    model_validator,
)

from provisioning.text import is_clean_text

MAX_GRACE_S = 90 * 86400
LOT_MAX = 64  # clients.lot is String(64)
NAME_MAX = 128  # clients.name is String(128)

# Each rule is one regular expression, used both to check input and as the `pattern` in the
# OpenAPI document, so the document and the validators never disagree (issue 9). `\Z`, not `$`:
# `$` also matches before a final newline.
#
# Lot ids become MQTT topic levels (`parkfleet/lots/<lot>/...`): '/' would add a level, '+' and
# '#' are wildcards (MQTT 5.0 §4.7.1) and may not appear in a published topic. An allow-list is
# stricter than that and also keeps ids safe in URLs, file names and log lines.
LOT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z"
# Names: no control (Cc), invisible format (Cf), line/paragraph separator (Zl, Zp) or surrogate
# (Cs) characters, which would corrupt tables and logs (ranges from Unicode 14), and at least one
# character that is not blank (surrounding blanks are trimmed).
_NOT_IN_NAMES_BMP = (
    r"\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e"
    r"\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
)
# Surrogates and the few format characters beyond the BMP: checked here too, but left out of
# the document's pattern, which JSON Schema tools read as ECMA-262 (no `\U` escapes there).
_NOT_IN_NAMES = _NOT_IN_NAMES_BMP + (
    r"\ud800-\udfff\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3"
    r"\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)


def _name_pattern(forbidden: str) -> str:
    return rf"^[^{forbidden}]*[^{forbidden}\s][^{forbidden}]*\Z"


NAME_PATTERN = _name_pattern(_NOT_IN_NAMES_BMP)
# A unicast MAC-48 (the I/G bit, IEEE 802 §8.2, is the first octet's lowest bit: a board's
# station address is never a group address) and not all zero, with ':' or '-' or nothing
# between octets.
MAC_PATTERN = (
    r"^\s*(?!(?:00[:-]?){5}00\s*\Z)"
    r"[0-9A-Fa-f][02468AaCcEe]([:-]?)[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}\s*\Z"
)
_LOT_RE = re.compile(LOT_PATTERN)
_NAME_RE = re.compile(_name_pattern(_NOT_IN_NAMES))
_MAC_RE = re.compile(MAC_PATTERN)


def check_lot(lot: str) -> str:
    """Return `lot` if it is a valid lot id, else raise `ValueError` saying why."""
    if not 1 <= len(lot) <= LOT_MAX:
        raise ValueError(f"lot must be 1 to {LOT_MAX} characters")
    if not _LOT_RE.search(lot):
        raise ValueError(
            "lot may contain only letters A-Z a-z, digits, '.', '_' and '-', and must start "
            "with a letter or digit (it is used as an MQTT topic level)"
        )
    return lot


def check_name(name: str) -> str:
    """Return `name` without surrounding blanks, or raise `ValueError` saying why."""
    if not 1 <= len(name) <= NAME_MAX or not name.strip():
        raise ValueError(f"name must be 1 to {NAME_MAX} characters")
    if not _NAME_RE.search(name):
        raise ValueError("name may not contain control characters")
    return name.strip()


def normalise_mac(mac: str) -> str:
    """`AA-BB-CC-DD-EE-FF`, `aabbccddeeff`, ... -> `aa:bb:cc:dd:ee:ff`; `ValueError` if not a
    unicast MAC-48 (a board's station address is never multicast, zero or broadcast)."""
    if not _MAC_RE.search(mac):
        if re.search(r"^\s*[0-9A-Fa-f][13579BbDdFf]", mac):
            raise ValueError("mac is a multicast or broadcast address, not a board's")
        if re.search(r"^\s*(?:00[:-]?){5}00\s*\Z", mac):
            raise ValueError("mac 00:00:00:00:00:00 is not a board's address")
        raise ValueError("mac must be six hex octets, e.g. aa:bb:cc:dd:ee:ff")
    digits = "".join(ch for ch in mac.lower() if ch in "0123456789abcdef")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


# The same rules as JSON Schema for the OpenAPI document (and so for `make fuzz`).
Lot = Annotated[
    str,
    AfterValidator(check_lot),
    WithJsonSchema({"type": "string", "maxLength": LOT_MAX, "pattern": LOT_PATTERN}),
]
Name = Annotated[
    str,
    AfterValidator(check_name),
    WithJsonSchema({"type": "string", "maxLength": NAME_MAX, "pattern": NAME_PATTERN}),
]
Mac = Annotated[
    str, AfterValidator(normalise_mac), WithJsonSchema({"type": "string", "pattern": MAC_PATTERN})
]


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


def _whole_number(value: Any) -> Any:
    # JSON Schema's "integer" (the OpenAPI document) includes 3065.0; `true` and "60" are no
    # integers there, so the field is strict apart from this.
    if type(value) is float and value.is_integer():
        return int(value)
    return value


class RotateSecret(_Body):
    # How long the old secret keeps working; absent = the server's PARK_SECRET_GRACE_S,
    # 0 = revoke it now (a leaked secret).
    grace_s: Annotated[
        Annotated[StrictInt, Field(ge=0, le=MAX_GRACE_S)] | None,
        BeforeValidator(_whole_number),
        WithJsonSchema(
            {"anyOf": [{"type": "integer", "minimum": 0, "maximum": MAX_GRACE_S}, {"type": "null"}]}
        ),
    ] = None


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
