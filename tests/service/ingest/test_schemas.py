"""The counts body rules: what is accepted, and the clear refusal of everything else."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from provisioning.service.ingest.schemas import (
    COUNTS_BODY_SCHEMA,
    MAX_BODY_BYTES,
    MAX_READINGS,
    InvalidBody,
    MalformedBody,
    parse_counts,
)


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def test_valid_body_keeps_first_of_repeated_seqs() -> None:
    batch = parse_counts(
        body(
            {
                "device_id": "dev_x",
                "readings": [
                    {"seq": 0, "cars": 1, "ts": 1700000000},
                    {"seq": 0, "cars": 9},
                    {"seq": 2, "cars": 0, "ts": 1.5},
                ],
                "health": {"uptime_s": 3, "rssi": None, "reset_cause": 4},
            }
        )
    )
    assert batch.readings == [(0, 1, 1700000000.0), (2, 0, 1.5)]
    assert batch.received == 3
    assert batch.device_id == "dev_x"
    assert batch.health == {"uptime_s": 3, "reset_cause": 4}  # null: not available, dropped
    assert parse_counts(b'{"readings": []}').readings == []


CRASH = {"version": "1.1.0", "count": 3, "cause": "exception", "traceback": "Traceback ...\n"}


def test_vitals_and_a_crash_report_are_accepted() -> None:
    vitals = {"heap_min": 20480, "heap_block": 9000, "rssi_min": -91, "wifi_drops": 2}
    vitals |= {"token_fails": 1, "post_fails": 7, "interval_s": 60}
    crash = {**CRASH, "traceback": 'File "x": "quoted", \\ and ' + "y" * 560}
    batch = parse_counts(body({"readings": [], "health": vitals, "crash": crash}))
    assert batch.health == vitals
    watchdog = {"version": None, "count": 1, "cause": "watchdog", "traceback": ""}
    assert parse_counts(body({"readings": [], "crash": watchdog})).readings == []


def test_a_full_batch_fits_the_body_limit() -> None:
    readings = [{"seq": 2**62 + i, "cars": 999_999, "ts": 1799999999.123456} for i in range(500)]
    assert len(body({"readings": readings, "device_id": "d" * 64})) < MAX_BODY_BYTES


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"[1,",
        b"\xff\xfe",
        b'{"readings": [{"seq": NaN, "cars": 1}]}',
        b'{"readings": [], "x": Infinity}',
        b'{"readings": [{"seq": ' + b"9" * 5000 + b"}]}",
    ],
)
def test_non_json_is_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedBody):
        parse_counts(raw)


READING = {"seq": 1, "cars": 2, "ts": None}


@pytest.mark.parametrize(
    ("obj", "loc", "words"),
    [
        ([READING], ["body"], "object"),
        ({}, ["body", "readings"], "required"),
        ({"readings": [READING], "extra": 1}, ["body", "extra"], "unknown field 'extra'"),
        ({"readings": {"seq": 1}}, ["body", "readings"], "list"),
        ({"readings": [READING] * (MAX_READINGS + 1)}, ["body", "readings"], "at most 500"),
        ({"readings": [1]}, ["body", "readings", 0], "object"),
        ({"readings": [{**READING, "lot": "x"}]}, ["body", "readings", 0, "lot"], "unknown"),
        ({"readings": [{"cars": 1}]}, ["body", "readings", 0, "seq"], "integer"),
        ({"readings": [{**READING, "seq": -1}]}, ["body", "readings", 0, "seq"], "integer"),
        ({"readings": [{**READING, "seq": True}]}, ["body", "readings", 0, "seq"], "integer"),
        ({"readings": [{**READING, "seq": 2.5}]}, ["body", "readings", 0, "seq"], "integer"),
        ({"readings": [{**READING, "seq": "1"}]}, ["body", "readings", 0, "seq"], "integer"),
        ({"readings": [{**READING, "seq": 2**63}]}, ["body", "readings", 0, "seq"], "integer"),
        ({"readings": [{**READING, "cars": False}]}, ["body", "readings", 0, "cars"], "integer"),
        ({"readings": [{**READING, "cars": 10**7}]}, ["body", "readings", 0, "cars"], "integer"),
        (
            {"readings": [READING, {**READING, "ts": "now"}]},
            ["body", "readings", 1, "ts"],
            "epoch seconds",
        ),
        ({"readings": [{**READING, "ts": -1}]}, ["body", "readings", 0, "ts"], "epoch"),
        ({"readings": [{**READING, "ts": 1e300}]}, ["body", "readings", 0, "ts"], "epoch"),
        ({"readings": [{**READING, "ts": 10**10}]}, ["body", "readings", 0, "ts"], "epoch"),
        ({"readings": [{**READING, "ts": True}]}, ["body", "readings", 0, "ts"], "epoch"),
        ({"readings": [], "device_id": 7}, ["body", "device_id"], "string"),
        ({"readings": [], "device_id": ""}, ["body", "device_id"], "string"),
        ({"readings": [], "health": []}, ["body", "health"], "object"),
        ({"readings": [], "health": {"temp": 1}}, ["body", "health", "temp"], "unknown"),
        ({"readings": [], "health": {"uptime_s": 1.5}}, ["body", "health", "uptime_s"], "integer"),
        ({"readings": [], "health": {"rssi": 5000}}, ["body", "health", "rssi"], "integer"),
        ({"readings": [], "health": {"dropped": True}}, ["body", "health", "dropped"], "integer"),
        (
            {"readings": [], "health": {"reset_cause": "x" * 33}},
            ["body", "health", "reset_cause"],
            "printable ASCII",
        ),
        (
            {"readings": [], "health": {"reset_cause": "a\nb"}},
            ["body", "health", "reset_cause"],
            "printable ASCII",
        ),
        (
            {"readings": [], "health": {"post_fails": -1}},
            ["body", "health", "post_fails"],
            "integer",
        ),
        ({"readings": [], "health": {"rssi_min": 99}}, ["body", "health", "rssi_min"], "integer"),
        ({"readings": [], "crash": "boom"}, ["body", "crash"], "object"),
        ({"readings": [], "crash": {**CRASH, "at": 1}}, ["body", "crash", "at"], "unknown"),
        ({"readings": [], "crash": {"count": 1}}, ["body", "crash", "cause"], "required"),
        (
            {"readings": [], "crash": {**CRASH, "cause": "panic"}},
            ["body", "crash", "cause"],
            "one of",
        ),
        ({"readings": [], "crash": {**CRASH, "cause": []}}, ["body", "crash", "cause"], "one of"),
        ({"readings": [], "crash": {**CRASH, "count": 0}}, ["body", "crash", "count"], "integer"),
        (
            {"readings": [], "crash": {**CRASH, "version": "1.1"}},
            ["body", "crash", "version"],
            "X.Y.Z",
        ),
        (
            {"readings": [], "crash": {**CRASH, "traceback": "x" * 601}},
            ["body", "crash", "traceback"],
            "600",
        ),
    ],
)
def test_schema_errors_name_the_field(obj: Any, loc: list[Any], words: str) -> None:
    with pytest.raises(InvalidBody) as caught:
        parse_counts(body(obj))
    detail = caught.value.detail()[0]
    assert detail["loc"] == loc
    assert words in detail["msg"]


def test_numbers_beyond_what_we_parse_are_malformed() -> None:
    # RFC 8259 §6 lets a parser limit range and precision; these are refused as non-JSON (400).
    for raw in (
        b'{"readings": [{"seq": 1, "cars": 1, "ts": 1e400}]}',
        b'{"readings": [{"seq": 1, "cars": 1, "ts": 1%s}]}' % (b"0" * 400),
    ):
        with pytest.raises(MalformedBody):
            parse_counts(raw)


def test_the_validator_agrees_with_the_openapi_document() -> None:
    # JSON Schema's "integer" includes 110.0; an empty reset cause breaks
    # the schema as it breaks the validator; a key twice is refused (orjson keeps the last).
    batch = parse_counts(b'{"readings": [{"seq": 110.0, "cars": 1e1}], "health": {"rssi": -6e1}}')
    assert batch.readings == [(110, 10, None)] and batch.health == {"rssi": -60}
    assert type(batch.readings[0][0]) is int
    pattern = COUNTS_BODY_SCHEMA["properties"]["health"]["properties"]["reset_cause"]["oneOf"][0]
    assert not re.fullmatch(pattern["pattern"].strip("^$"), "")
    for cause in ("", "\x00", "é", "x" * 33):
        with pytest.raises(InvalidBody):
            parse_counts(json.dumps({"readings": [], "health": {"reset_cause": cause}}).encode())
    assert parse_counts(b'{"readings": [], "health": {"reset_cause": "PWRON_RESET"}}').health
    for body in (
        b'{"readings": [{"seq": 1, "seq": 2, "cars": 3}]}',
        b'{"readings": [], "readings": [{"seq": 1, "cars": 3}]}',
        b'{"readings": [], "health": {"rssi": -1, "rssi": -2}, "device_id": "a:b"}',
    ):
        with pytest.raises(MalformedBody, match="repeats a key"):
            parse_counts(body)
    # Colons inside strings are no repeated keys.
    assert (
        parse_counts(b'{"readings": [], "device_id": "a:b:c", "health": {}}').device_id == "a:b:c"
    )


def test_health_counts_are_the_integers_the_document_promises() -> None:
    """A whole number written as a float is an integer to JSON Schema: up to 2**53 - 1, the
    bound the document gives, it is taken; beyond it is refused, as the document says."""
    top = 2**53 - 1
    body = b'{"readings":[],"health":{"dropped":%d.0,"uptime_s":%d}}' % (top, top)
    assert parse_counts(body).health == {"dropped": top, "uptime_s": top}
    with pytest.raises(InvalidBody):
        parse_counts(b'{"readings":[],"health":{"dropped":9007199254740992.0}}')
    documented = COUNTS_BODY_SCHEMA["properties"]["health"]["properties"]["dropped"]
    assert documented["maximum"] == top
