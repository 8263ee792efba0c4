"""What the release and rollout admin API accepts: the admin API's body rules
(common/admin_schemas.py `_Body`: unknown fields and unclean text refused; strict JSON before
that, registry/routes.py), with every number bounded and typed strictly (`"5"` and `true` are
no numbers)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    WithJsonSchema,
    model_validator,
)

from provisioning.common import bundle
from provisioning.common.admin_schemas import Lot, _Body, _whole_number
from provisioning.common.bundle import VERSION_RE
from provisioning.common.errors import ParkctlError
from provisioning.common.rules import LOT_MAX, LOT_PATTERN
from provisioning.service.releases.phases import MAX_PHASES
from provisioning.service.releases.rollout import DEFAULT_PARALLEL

MAX_TARGETS = 500  # boards named in one request (a whole lot: by its name)
MAX_WAIT_S = 30 * 86400.0
VERSION_PATTERN = "^" + VERSION_RE.pattern + r"\Z"


def check_version(version: str) -> str:
    """`version` if it is X.Y.Z (bundle.parse_version's rule), else ValueError."""
    try:
        bundle.parse_version(version)
    except ParkctlError as error:
        raise ValueError(error.message) from None
    return version


# The same rule as JSON Schema for the OpenAPI document (and so for `make fuzz`).
Version = Annotated[
    str,
    AfterValidator(check_version),
    WithJsonSchema({"type": "string", "maxLength": 32, "pattern": VERSION_PATTERN}),
]
# Client IDs are `dev_` + URL-safe base64 (auth/secrets.py); an ID named here must exist.
CLIENT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}\Z"
_CLIENT_ID = re.compile(CLIENT_ID_PATTERN)


def check_client_id(client_id: str) -> str:
    """`client_id` if it has a client ID's shape, else ValueError."""
    if not _CLIENT_ID.match(client_id):
        raise ValueError("a device ID is 1 to 64 characters A-Z a-z 0-9 _ -")
    return client_id


DeviceId = Annotated[str, AfterValidator(check_client_id)]
Seconds = Annotated[StrictFloat, Field(ge=0, le=MAX_WAIT_S, allow_inf_nan=False)]
Share = Annotated[StrictFloat, Field(ge=0, le=1, allow_inf_nan=False)]
# A phase: a number of boards (at most a fleet's), or a share of them ("5%"): phases.py.
MAX_PHASE_BOARDS = 1_000_000
PHASE_PATTERN = r"^([0-9]{1,6}|[0-9]{1,3}(\.[0-9]{1,3})?%)\Z"
Phase = Annotated[
    Annotated[StrictInt, Field(ge=1, le=MAX_PHASE_BOARDS)] | str,
    BeforeValidator(_whole_number),
    AfterValidator(lambda p: _phase(p)),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_PHASE_BOARDS},
                {"type": "string", "pattern": PHASE_PATTERN},
            ]
        }
    ),
]


def _phase(phase: int | str) -> int | str:
    if isinstance(phase, str) and not re.match(PHASE_PATTERN, phase):
        raise ValueError('a phase is a number of boards or a share such as "5%"')
    return phase


class Targets(_Body):
    """Boards by id, or every board of a lot (at least one of the two; `devices` wins)."""

    # The document says what is enforced: a non-empty list, or a lot, is required.
    model_config = ConfigDict(
        json_schema_extra={"anyOf": [{"required": ["devices"]}, {"required": ["lot"]}]}
    )

    devices: Annotated[
        list[DeviceId] | None,
        Field(min_length=1, max_length=MAX_TARGETS),
        WithJsonSchema(
            {
                "type": "array",
                "items": {"type": "string", "pattern": CLIENT_ID_PATTERN},
                "minItems": 1,
                "maxItems": MAX_TARGETS,
            }
        ),
    ] = None
    lot: Annotated[
        Lot | None, WithJsonSchema({"type": "string", "maxLength": LOT_MAX, "pattern": LOT_PATTERN})
    ] = None

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        # Absent, not null, as the document says (a null would be a second way to say it).
        if isinstance(data, dict) and any(data.get(k, "") is None for k in ("devices", "lot")):
            raise ValueError('"devices" and "lot" are left out when not given, not null')
        return data

    @model_validator(mode="after")
    def _one_of(self) -> Targets:
        if self.devices is None and self.lot is None:
            raise ValueError('give "devices" (a list of ids) or "lot"')
        return self


class RolloutStart(Targets):
    """`POST /admin/rollouts`: the release, its boards, how many canaries first, how long the
    canaries must run confirmed before the rest follow, and how long a silent canary pauses it."""

    version: Version
    canary: Annotated[
        Annotated[StrictInt, Field(ge=0, le=MAX_TARGETS)], BeforeValidator(_whole_number)
    ] = 1
    canary_wait_s: Seconds | None = None  # the shorthand's wait; phase_wait_s wins
    phases: Annotated[list[Phase], Field(min_length=1, max_length=MAX_PHASES)] | None = None
    phase_wait_s: Seconds | None = None  # 1800 s when neither wait is given
    silence_s: Seconds = 900.0
    max_crash_rate: Share = 0.05
    min_online: Share = 0.9
    parallel: Annotated[
        Annotated[StrictInt, Field(ge=1, le=10_000)], BeforeValidator(_whole_number)
    ] = DEFAULT_PARALLEL
