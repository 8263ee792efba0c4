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
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StrictInt,
    WithJsonSchema,
    field_serializer,
    model_validator,
)

from provisioning.common.rules import (
    CLIENT_ID_PATTERN,
    LOT_MAX,
    LOT_PATTERN,
    MAC_PATTERN,
    NAME_MAX,
    NAME_PATTERN,
    check_client_id,
    check_lot,
    check_name,
    normalise_mac,
)
from provisioning.common.text import is_clean_text

MAX_GRACE_S = 90 * 86400

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
ExternalClientId = Annotated[
    str,
    AfterValidator(check_client_id),
    WithJsonSchema({"type": "string", "pattern": CLIENT_ID_PATTERN}),
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
    """A board with a secret generated here; or, with `client_id` and `issuer` (both or neither),
    a board registered in that trusted external authorization server, without a secret here."""

    lot: Lot
    name: Name
    mac: Mac | None = None
    client_id: ExternalClientId | None = None
    issuer: Annotated[str, Field(min_length=1, max_length=512)] | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> DeviceCreate:
        if (self.client_id is None) != (self.issuer is None):
            raise ValueError("client_id and issuer go together (a device of an external server)")
        return self


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


class GateCounters(BaseModel):
    """A gate board's newest counters: raw 32-bit `in`/`out` as the board sent
    them, and its series: a counter that went backwards (a wiped flash, a swapped board) began
    series 2, 3... at `series_since` instead of subtracting from the lot's total; `faults`
    counts steps beyond what its lanes can pass (ingest/occupancy.py), the last at
    `fault_at`."""

    seq: int
    gate_in: int
    gate_out: int
    series: int
    series_since: float | None
    faults: int = 0
    fault_at: float | None = None


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
    counters: GateCounters | None = None  # gate boards only
    health: dict[str, Any] | None = None
    health_at: float | None = None
    # The agent: version it runs, target version, update state and its reason.
    agent: dict[str, Any] | None = None
    # The newest crash report (`traceback`, `version`, `count`, `cause`, `running`, `at`) and
    # the newest vitals (health fields, `at`, `version`): `GET /admin/devices/{id}` only.
    last_crash: dict[str, Any] | None = None
    vitals: dict[str, Any] | None = None
    # The external authorization server the board gets its tokens from; None: this service.
    issuer: str | None = None


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


class ServiceConfig(BaseModel):
    """GET /admin/config: what parkctl needs to register boards in an external server."""

    ingest_audience: str  # the `aud` external tokens must carry
    trusted_issuers: list[str]  # exactly as their tokens' `iss`


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


CAPACITY_MAX = 1_000_000
# Strict: `"5"` and `true` are no numbers (a whole float such as 5.0 is, as in JSON Schema).
Capacity = Annotated[
    Annotated[StrictInt, Field(ge=0, le=CAPACITY_MAX)], BeforeValidator(_whole_number)
]


class LotCreate(_Body):
    name: Lot
    capacity: Capacity | None = None  # spaces in the lot; None: unknown (no `free`)
    label: Name | None = None  # what people read; default: the name


class LotUpdate(_Body):
    """Only the fields sent change; `"capacity": null` clears the capacity."""

    capacity: Capacity | None = None
    label: Name | None = None


class LotRecord(BaseModel):
    """A lot's record (GET /admin/lots...). Times are epoch seconds."""

    name: str
    capacity: int | None
    label: str
    created_at: float
    updated_at: float


class LotList(BaseModel):
    items: list[LotRecord]  # by name
    next_cursor: str | None = None  # pass as ?cursor= for the next page; None: the last


class LotRecount(_Body):
    """`POST /admin/lots/{name}/recount`: the cars an operator counted in the lot."""

    cars: Capacity


class RecountResult(BaseModel):
    """The lot's new baseline. `counters`: each gate board's (in, out) at the recount, which
    its flows now count from; `previous`: the total reported just before."""

    lot: str
    cars: int
    since: float
    previous: int
    counters: dict[str, list[int]]
