"""The `POST /v1/counts` body: its shape in one set of tables, parsed with orjson and checked
by hand in tight loops.

The tables below (`ZONE_READING`, `GATE_READING`, `AGENT_FIELDS`, `HEALTH_FIELDS`,
`BODY_FIELDS`) give each object's fields as JSON Schema: the OpenAPI document shows them as
`COUNTS_BODY_SCHEMA`, and `parse_counts` takes its key sets, required fields and bounds from
them. A field is added or changed there, once.

A 500-reading batch is parsed and validated in a fraction of a millisecond this way (orjson is
4-5x faster than `json` here); a pydantic model per reading costs several times more and the hot
path has no use for its objects. orjson is also strict where RFC 8259 is: no NaN or Infinity, no
invalid UTF-8. Every refusal names
the offending field with a FastAPI-style `loc`, so a board's log shows exactly what was wrong.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

import orjson

from provisioning.common.rules import LINE_PATTERN, LINE_RE

MAX_READINGS = 500
# 500 readings with 19-digit seqs and float timestamps fit in ~40 KB; 64 KB leaves headroom.
MAX_BODY_BYTES = 64 * 1024
# A board's seq is 32 bits; the API takes up to 2**53 - 1, the integers every JSON parser
# reads exactly (RFC 7493 §2.2), so the document's bound means the same to every tool.
MAX_SEQ = 2**53 - 1
MAX_CARS = 1_000_000
# A gate board's counters are 32-bit and wrap (device/gate.py); the server reads them wrap-safe.
MAX_COUNTER = 2**32 - 1
MAX_TS = 1e10  # epoch seconds, year 2286: anything later is a broken clock, not a time
MAX_DEVICE_ID = 64
MAX_RESET_CAUSE = 32
# A reset cause name: printable ASCII (MicroPython's names are), the same rule as the schema's.
RESET_CAUSE_PATTERN = rf"^[ -~]{{1,{MAX_RESET_CAUSE}}}\Z"  # \Z: `$` would allow a final "\n"
RESET_CAUSE_RE = re.compile(RESET_CAUSE_PATTERN)

UPDATE_STATES = frozenset({"installed", "confirmed", "rolled_back", "refused"})
MAX_REASON = 200
_VERSION_RE = r"^[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}\Z"
# A board's report of the crash(es) since its last acknowledged report (kept across the reset).
CRASH_CAUSES = ("exception", "watchdog", "brownout", "memory")
MAX_TRACEBACK = 600
MAX_CRASH_COUNT = 2**31 - 1
# Text and line breaks: no control character (C0 but tab and newline, DEL, C1), which an
# operator's terminal could act on (an ANSI escape rewrites what it shows).
TRACEBACK_PATTERN = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*\Z"
_TRACEBACK_RE = re.compile(TRACEBACK_PATTERN)
# Health fields reported by the device agent: name -> inclusive integer bounds.
_HEALTH_INTS: dict[str, tuple[int, int]] = {
    "uptime_s": (0, MAX_SEQ),  # as every count: the integers any JSON parser holds exactly
    "free_heap": (0, 2**40),
    "rssi": (-200, 50),  # dBm
    "spool_depth": (0, 2**31),
    "dropped": (0, MAX_SEQ),
    # How often the board takes a reading: the dashboard calls it offline after a few missed.
    "interval_s": (1, 86400),
    # Vitals: the lowest free heap since boot and the largest free block (bytes), the lowest
    # RSSI, WiFi drops, failed token requests and failed posts since the last acknowledged report.
    "heap_min": (0, 2**40),
    "heap_block": (0, 2**40),
    "rssi_min": (-200, 50),
    "wifi_drops": (0, 2**31),
    "token_fails": (0, 2**31),
    "post_fails": (0, 2**31),
}
# Short printable names: why the board last reset, and the agent's version.
_HEALTH_NAMES = ("reset_cause", "agent")


def _int(low: int, high: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high}


_TS: dict[str, Any] = {"type": ["number", "null"], "minimum": 0, "exclusiveMaximum": MAX_TS}


def _object(fields: dict[str, Any], required: list[str], nullable: bool = False) -> dict[str, Any]:
    return {
        "type": ["object", "null"] if nullable else "object",
        "additionalProperties": False,
        **({"required": required} if required else {}),
        "properties": fields,
    }


# A zone board's absolute count, or a gate board's cumulative counters.
ZONE_READING: dict[str, Any] = {"seq": _int(0, MAX_SEQ), "cars": _int(0, MAX_CARS), "ts": _TS}
GATE_READING: dict[str, Any] = {
    "seq": _int(0, MAX_SEQ),
    "in": _int(0, MAX_COUNTER),
    "out": _int(0, MAX_COUNTER),
    "ts": _TS,
}
# The agent's report of the version it runs and its update state (device/appstate.py).
AGENT_FIELDS: dict[str, Any] = {
    "version": {"type": "string", "pattern": _VERSION_RE},
    "target": {"type": "string", "pattern": _VERSION_RE},
    "update": {"type": "string", "enum": sorted(UPDATE_STATES)},
    "reason": {"type": "string", "maxLength": MAX_REASON, "pattern": LINE_PATTERN},
}
HEALTH_FIELDS: dict[str, Any] = {
    **{
        name: _int(*bounds) | {"type": ["integer", "null"]} for name, bounds in _HEALTH_INTS.items()
    },
    "reset_cause": {
        "oneOf": [
            {"type": "string", "pattern": RESET_CAUSE_PATTERN},
            _int(0, 255),
            {"type": "null"},
        ],
    },
    "agent": {"oneOf": [{"type": "string", "pattern": RESET_CAUSE_PATTERN}, {"type": "null"}]},
}
CRASH_FIELDS: dict[str, Any] = {
    "version": {"type": ["string", "null"], "pattern": _VERSION_RE},
    "count": _int(1, MAX_CRASH_COUNT),
    "cause": {"type": "string", "enum": list(CRASH_CAUSES)},
    "traceback": {
        "type": ["string", "null"],
        "maxLength": MAX_TRACEBACK,
        "pattern": TRACEBACK_PATTERN,
    },
}
BODY_FIELDS: dict[str, Any] = {
    "readings": {
        "type": "array",
        "maxItems": MAX_READINGS,
        "items": {
            "oneOf": [
                _object(ZONE_READING, ["seq", "cars"]),
                _object(GATE_READING, ["seq", "in", "out"]),
            ]
        },
    },
    "device_id": {"type": ["string", "null"], "minLength": 1, "maxLength": MAX_DEVICE_ID},
    "agent": _object(AGENT_FIELDS, ["version"]),
    "health": _object(HEALTH_FIELDS, [], nullable=True),
    "crash": _object(CRASH_FIELDS, ["count", "cause"], nullable=True),
}
COUNTS_BODY_SCHEMA: dict[str, Any] = _object(BODY_FIELDS, ["readings"])

# What the hand-written checks below read from the tables.
_BODY_KEYS = frozenset(BODY_FIELDS)
_READING_KEYS = frozenset(ZONE_READING)
_GATE_KEYS = frozenset(GATE_READING)
AGENT_KEYS = frozenset(AGENT_FIELDS)
HEALTH_KEYS = frozenset(HEALTH_FIELDS)
CRASH_KEYS = frozenset(CRASH_FIELDS)
# Each reading kind's integer fields with their upper bounds (all start at 0), in the order
# a refusal names them.
_ZONE_LIMITS = tuple((n, f["maximum"]) for n, f in ZONE_READING.items() if n != "ts")
_GATE_LIMITS = tuple((n, f["maximum"]) for n, f in GATE_READING.items() if n != "ts")


class MalformedBody(ValueError):
    """The body is not JSON at all (400)."""


class InvalidBody(ValueError):
    """The body is JSON but breaks the schema (422); `loc` names the field as FastAPI does."""

    def __init__(self, loc: tuple[str | int, ...], msg: str, kind: str) -> None:
        super().__init__(msg)
        self.loc = ("body", *loc)
        self.msg = msg
        self.kind = kind

    def detail(self) -> list[dict[str, Any]]:
        """FastAPI's own 422 shape, so clients parse one format for every validation error."""
        return [{"loc": list(self.loc), "msg": self.msg, "type": self.kind}]


Reading = tuple[int, int, float | None]  # a zone board's (seq, cars, ts)
GateReading = tuple[int, int, int, float | None]  # a gate board's (seq, in, out, ts)


@dataclass(frozen=True, slots=True)
class CountsBatch:
    """A validated body: readings unique by seq (first occurrence wins), in body order; zone
    readings in `readings`, gate readings in `gates`."""

    readings: list[Reading]
    received: int  # readings in the body, counting in-batch repeats
    device_id: str | None
    health: dict[str, int | str] | None
    gates: list[GateReading] = field(default_factory=list)
    agent: dict[str, str] | None = None
    # Not from the body: the device's posts refused by the per-device rate since its last
    # stored one (set by the route, kept on the board's state for the dashboard).
    refused: int = 0
    crash: Crash | None = None


@dataclass(frozen=True, slots=True)
class Crash:
    """A validated crash report: `version` that crashed (None: unknown), `count` crashes since
    the last acknowledged report, `cause` (CRASH_CAUSES), the last lines of the `traceback`."""

    version: str | None
    count: int
    cause: str
    traceback: str


def _fail(loc: tuple[str | int, ...], msg: str, kind: str = "value_error") -> NoReturn:
    raise InvalidBody(loc, msg, kind)


def _check_keys(obj: dict[str, Any], allowed: frozenset[str], loc: tuple[str | int, ...]) -> None:
    unknown = obj.keys() - allowed
    if unknown:
        name = sorted(unknown)[0][:40]  # echoed back: keep it short
        _fail(
            (*loc, name),
            f"unknown field {name!r}; allowed: {', '.join(sorted(allowed))}",
            "extra_forbidden",
        )


def parse_counts(body: bytes) -> CountsBatch:
    """Decode and validate a counts body; raises `MalformedBody` (400) or `InvalidBody` (422)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:  # also NaN, bad UTF-8, integers over 64 bits
        raise MalformedBody(f"body is not valid JSON: {error}") from None
    if type(data) is not dict:
        _fail((), "body must be a JSON object", "dict_type")
    _check_keys(data, _BODY_KEYS, ())
    device_id = data.get("device_id")
    if device_id is not None and (
        type(device_id) is not str or not device_id or len(device_id) > MAX_DEVICE_ID
    ):
        _fail(("device_id",), f"must be a non-empty string of at most {MAX_DEVICE_ID} characters")
    health = data.get("health")
    if "readings" not in data:
        _fail(("readings",), "field required", "missing")
    readings, gates, received, keys = _parse_readings(data["readings"])
    parsed_health = None if health is None else parse_health(health)
    keys += len(data) + (len(health) if type(health) is dict else 0)
    crash = data.get("crash")
    keys += len(crash) if type(crash) is dict else 0
    _no_repeated_keys(body, keys)
    return CountsBatch(
        readings=readings,
        gates=gates,
        received=received,
        device_id=device_id,
        health=parsed_health,
        agent=None if data.get("agent") is None else parse_agent(data["agent"]),
        crash=None if crash is None else parse_crash(crash),
    )


def _no_repeated_keys(body: bytes, keys: int) -> None:
    """Refuse an object with a key twice (`{"seq": 1, "seq": 2}`: orjson keeps the last), as
    the token endpoint does (RFC 8259 §4: names SHOULD be unique; which one wins is undefined).

    Every key is followed by one ':' outside strings, so a body with no more ':' than the
    parsed objects have keys has no repeated key; only one with colons inside strings as well
    takes the exact (slower) parse.
    """
    if body.count(b":") <= keys:
        return

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen = dict(items)
        if len(seen) != len(items):
            raise MalformedBody("a JSON object repeats a key")
        return seen

    json.loads(body, object_pairs_hook=pairs)


def _parse_readings(raw: Any) -> tuple[list[Reading], list[GateReading], int, int]:
    """(unique zone readings, unique gate readings, readings received, keys in the reading
    objects)."""
    if type(raw) is not list:
        _fail(("readings",), "must be a list", "list_type")
    if len(raw) > MAX_READINGS:
        _fail(("readings",), f"at most {MAX_READINGS} readings per request", "too_long")
    out: list[Reading] = []
    gates: list[GateReading] = []
    seen: set[int] = set()
    keys = 0
    for i, item in enumerate(raw):
        # The fast path tests everything at once; `_explain` names the first broken rule.
        # `type(x) is int` rejects bool (a subclass of int) and floats such as 3.0 in one test.
        if type(item) is not dict:
            _explain(i, item)
        seq = item.get("seq")
        cars = item.get("cars")
        ts = item.get("ts")
        size = len(item)
        keys += size
        if cars is None and "cars" not in item:
            gate = _gate_reading(i, item, seq, ts)
            if gate[0] not in seen:
                seen.add(gate[0])
                gates.append(gate)
            continue
        if (
            type(seq) is not int
            or type(cars) is not int
            or not 0 <= seq <= MAX_SEQ
            or not 0 <= cars <= MAX_CARS
            or not (size == 2 or (size == 3 and (ts is not None or "ts" in item)))
        ):
            seq, cars = _integral(i, item, seq, cars)
        ts = _ts(i, item, ts)
        if seq not in seen:
            seen.add(seq)
            out.append((seq, cars, ts))
    return out, gates, len(raw), keys


def _gate_reading(i: int, item: dict[str, Any], seq: Any, ts: Any) -> GateReading:
    """A gate board's reading `{"seq", "in", "out", "ts"?}`, or its `InvalidBody`."""
    values = [_whole(seq), _whole(item.get("in")), _whole(item.get("out"))]
    size = len(item)
    if (
        not all(type(v) is int for v in values)
        or not 0 <= values[0] <= MAX_SEQ
        or not (0 <= values[1] <= MAX_COUNTER and 0 <= values[2] <= MAX_COUNTER)
        or not (size == 3 or (size == 4 and "ts" in item))
    ):
        _explain(i, item)
    return (values[0], values[1], values[2], _ts(i, item, ts))


def _ts(i: int, item: dict[str, Any], ts: Any) -> float | None:
    """A reading's `ts` as float seconds (None: not sent), or its `InvalidBody`."""
    if ts is None:
        return None
    if type(ts) is int and 0 <= ts < MAX_TS:  # range first: float(10**400) raises
        return float(ts)
    if type(ts) is not float or not 0.0 <= ts < MAX_TS:  # NaN fails the comparison
        _explain(i, item)
    return ts


def _whole(value: Any) -> Any:
    """An integral float (110.0, 1e2) as an int, anything else as it is: JSON Schema's
    "integer", which the OpenAPI document promises, includes them (the slow path only)."""
    if type(value) is float and value.is_integer() and abs(value) <= MAX_SEQ:
        return int(value)
    return value


def _integral(i: int, item: dict[str, Any], seq: Any, cars: Any) -> tuple[int, int]:
    """`seq` and `cars` as ints (see `_whole`), or the reading's `InvalidBody`."""
    values = []
    for value, high in ((_whole(seq), MAX_SEQ), (_whole(cars), MAX_CARS)):
        if type(value) is not int or not 0 <= value <= high:
            _explain(i, item)
        values.append(value)
    size = len(item)
    if not (size == 2 or (size == 3 and "ts" in item)):
        _explain(i, item)
    return values[0], values[1]


def _explain(i: int, item: Any) -> NoReturn:
    """Raise the `InvalidBody` for the first rule that reading `i` breaks."""
    if type(item) is not dict:
        _fail(("readings", i), "must be an object", "dict_type")
    gate = "in" in item or "out" in item
    if gate and "cars" in item:
        _fail(
            ("readings", i),
            "a reading has either cars (a zone board) or in and out (a gate board), not both",
        )
    _check_keys(item, _GATE_KEYS if gate else _READING_KEYS, ("readings", i))
    for name, high in _GATE_LIMITS if gate else _ZONE_LIMITS:
        value = _whole(item.get(name))
        if type(value) is not int or not 0 <= value <= high:
            kind = "missing" if name not in item else "int_type"
            _fail(("readings", i, name), f"must be an integer from 0 to {high}", kind)
    _fail(
        ("readings", i, "ts"),
        "must be epoch seconds (a finite number from 0 to 1e10) or null",
        "float_type",
    )


def parse_health(raw: Any) -> dict[str, int | str]:
    """Validate a health report: known fields only, integers in range, a short reset cause.

    Null values mean "not available" (e.g. no RSSI off WiFi) and are dropped.
    """
    if type(raw) is not dict:
        _fail(("health",), "must be an object", "dict_type")
    _check_keys(raw, HEALTH_KEYS, ("health",))
    health: dict[str, int | str] = {}
    for name, value in raw.items():
        if value is None:
            continue
        value = _whole(value)
        if name in _HEALTH_NAMES:
            code = name == "reset_cause" and type(value) is int and 0 <= value <= 255
            if not (code or (type(value) is str and RESET_CAUSE_RE.fullmatch(value))):
                _fail(
                    ("health", name),
                    f"must be a name (1 to {MAX_RESET_CAUSE} printable ASCII characters) or a "
                    "code from 0 to 255",
                )
            health[name] = value
            continue
        low, high = _HEALTH_INTS[name]
        if type(value) is not int or not low <= value <= high:
            _fail(("health", name), f"must be an integer from {low} to {high}", "int_type")
        health[name] = value
    return health


def parse_agent(raw: Any) -> dict[str, str]:
    """Validate the agent's report: `version` X.Y.Z, `update` one of UPDATE_STATES, a short
    printable `reason`, a `target` version."""
    import re

    if type(raw) is not dict:
        _fail(("agent",), "must be an object", "dict_type")
    _check_keys(raw, AGENT_KEYS, ("agent",))
    for name in ("version", "target"):
        value = raw.get(name)
        if (value is not None or name == "version") and (
            type(value) is not str or not re.match(AGENT_FIELDS[name]["pattern"], value)
        ):
            _fail(("agent", name), "must be a version X.Y.Z")
    update = raw.get("update")
    if update is not None and (type(update) is not str or update not in UPDATE_STATES):
        _fail(("agent", "update"), f"must be one of {', '.join(sorted(UPDATE_STATES))}")
    reason = raw.get("reason")
    if reason is not None and (
        type(reason) is not str or len(reason) > MAX_REASON or not LINE_RE.fullmatch(reason)
    ):
        _fail(("agent", "reason"), f"must be printable text of at most {MAX_REASON} characters")
    return {k: v for k, v in raw.items() if v is not None}


def parse_crash(raw: Any) -> Crash:
    """Validate a crash report: `version` X.Y.Z or null, `count` >= 1, `cause` one of
    CRASH_CAUSES, `traceback` text without control characters but line breaks and tabs
    (TRACEBACK_PATTERN), at most MAX_TRACEBACK characters."""
    if type(raw) is not dict:
        _fail(("crash",), "must be an object", "dict_type")
    _check_keys(raw, CRASH_KEYS, ("crash",))
    version = raw.get("version")
    if version is not None and (type(version) is not str or not re.match(_VERSION_RE, version)):
        _fail(("crash", "version"), "must be a version X.Y.Z or null")
    for name in ("count", "cause"):
        if name not in raw:
            _fail(("crash", name), "field required", "missing")
    count = _whole(raw["count"])
    if type(count) is not int or not 1 <= count <= MAX_CRASH_COUNT:
        _fail(("crash", "count"), f"must be an integer from 1 to {MAX_CRASH_COUNT}", "int_type")
    cause = raw["cause"]
    if type(cause) is not str or cause not in CRASH_CAUSES:
        _fail(("crash", "cause"), f"must be one of {', '.join(CRASH_CAUSES)}", "enum")
    text = raw.get("traceback", "")
    if text is None:
        text = ""
    if type(text) is not str or len(text) > MAX_TRACEBACK or not _TRACEBACK_RE.match(text):
        _fail(
            ("crash", "traceback"),
            f"must be text (line breaks, no control characters) of at most {MAX_TRACEBACK} "
            "characters",
            "string_type",
        )
    return Crash(version, count, str(cause), text)
