"""Gate boards counting in and out, zone boards, and the operator's recount.

Through the real app on SQLite and PostgreSQL: the totals on /v1/lots and /v1/lots/{lot}, the
exactly-once rules, honest counters (backwards, wrap at 2**32), the recount and its audit, and
the history endpoint under the same rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from rich.console import Console

from provisioning.common.admin_schemas import Device
from provisioning.common.scopes import ADMIN_AUDIENCE, DEVICES_ADMIN
from provisioning.parkctl.registry.render import device_table
from provisioning.service.app import create_app
from provisioning.service.ingest.schemas import InvalidBody, parse_counts
from provisioning.service.lots import occupancy
from provisioning.service.registry import service as registry
from provisioning.service.ui import views
from provisioning.store import sql
from tests.service.auth.conftest import Auth, make_settings
from tests.service.ingest.test_api import bearer, post, reader_token

T0 = 1_700_000_000.0  # in the past: a recount (now) comes after these readings


@pytest.fixture
def svc(tmp_path: Path, db_url: str) -> Iterator[Auth]:
    """The app on SQLite and on PostgreSQL (`db_url` is parametrised by tests/conftest.py)."""
    with TestClient(create_app(make_settings(tmp_path / "data", db_url))) as http:
        yield Auth(http)


def gate(seq: int, n_in: int, n_out: int) -> dict[str, Any]:
    return {"seq": seq, "in": n_in, "out": n_out, "ts": T0 + seq}


class Lot:
    """A lot on the service: an entrance board, an exit board, a zone board, an operator."""

    def __init__(self, api: Auth, lot: str = "north") -> None:
        self.api, self.name = api, lot
        self.entrance = self._board(lot, "entrance")
        self.exit = self._board(lot, "exit")
        op, secret = api.operator("ops")
        self.admin = bearer(api.token(op, secret, audience=ADMIN_AUDIENCE, scope=DEVICES_ADMIN))
        self.read = bearer(reader_token(api))

    def _board(self, lot: str, name: str) -> tuple[str, str]:
        client_id, secret = self.api.device(lot=lot, name=name)
        return client_id, self.api.token(client_id, secret)

    def post(self, board: tuple[str, str], *readings: dict[str, Any]) -> dict[str, Any]:
        response = post(self.api, board[1], {"readings": list(readings)})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def detail(self) -> dict[str, Any]:
        response = self.api.http.get(f"/v1/lots/{self.name}", headers=self.read)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def cars(self) -> int:
        cars = self.detail()["cars"]
        (listed,) = [
            lot
            for lot in self.api.http.get("/v1/lots", headers=self.read).json()["lots"]
            if lot["lot"] == self.name
        ]
        assert listed["cars"] == cars, (listed, cars)
        assert isinstance(cars, int)
        # The MQTT total of every post is summed by the database: the same numbers.
        assert sql_total(self.api, self.name) == (cars, listed["devices"])
        return cars

    def recount(self, cars: int) -> dict[str, Any]:
        response = self.api.http.post(
            f"/admin/lots/{self.name}/recount", json={"cars": cars}, headers=self.admin
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def sql_total(api: Auth, lot: str) -> tuple[int, int]:
    """(cars, devices) as `occupancy.total` sums them for the lot's MQTT total."""
    with api.ctx.sessions() as session:
        return occupancy.total(sql.Tx.of(session.connection()), lot)


def test_the_sql_total_counts_boards_without_readings_and_not_deleted_ones(svc: Auth) -> None:
    lot = Lot(svc)
    quiet = lot._board("north", "level-3")  # registered, never posted: a device, 0 cars
    gone = lot._board("north", "old-gate")
    lot.post(gone, gate(1, 50, 0))
    lot.post(lot.entrance, gate(1, 7, 0))
    assert lot.cars() == 57 and sql_total(svc, "north") == (57, 4)
    with svc.ctx.sessions() as session:
        registry.delete_device(session, "test", gone[0])
        session.commit()
    assert lot.cars() == 7 and sql_total(svc, "north") == (7, 3)
    assert quiet[0] in {d["device_id"] for d in lot.detail()["devices"]}
    assert sql_total(svc, "nowhere") == (0, 0)


def test_ten_in_four_out_is_six_and_a_recount_starts_from_its_number(svc: Auth) -> None:
    lot = Lot(svc)
    for k in range(1, 11):  # ten cars through the entrance, one reading each
        lot.post(lot.entrance, gate(k, k, 0))
    for k in range(1, 5):
        lot.post(lot.exit, gate(k, 0, k))
    assert lot.cars() == 6
    detail = lot.detail()
    assert detail["baseline"] == 0 and detail["since"] is None and not detail["drift"]
    flows = {f["device_id"]: (f["in"], f["out"]) for f in detail["flows"]}
    assert flows == {lot.entrance[0]: (10, 0), lot.exit[0]: (0, 4)}
    shares = {d["device_id"]: (d["kind"], d["cars"]) for d in detail["devices"]}
    assert shares == {lot.entrance[0]: ("gate", 10), lot.exit[0]: ("gate", -4)}

    recount = lot.recount(0)
    assert recount["previous"] == 6 and recount["cars"] == 0
    # The boards' counters are not reset: the server keeps their values at the recount.
    assert recount["counters"] == {lot.entrance[0]: [10, 0], lot.exit[0]: [0, 4]}
    assert lot.cars() == 0
    for k in range(11, 14):
        lot.post(lot.entrance, gate(k, k - 1 + 1, 0))  # in: 11, 12, 13
    assert lot.cars() == 3
    detail = lot.detail()
    assert detail["baseline"] == 0 and detail["since"] == recount["since"]
    assert {f["device_id"]: f["in"] for f in detail["flows"]}[lot.entrance[0]] == 3

    audit = svc.http.get("/admin/audit", params={"target": "north"}, headers=lot.admin).json()
    (event,) = [e for e in audit["items"] if e["action"] == "lot.recount"]
    assert event["detail"]["cars"] == 0 and event["detail"]["previous"] == 6
    assert event["detail"]["counters"][lot.entrance[0]] == [10, 0]


def test_resent_and_late_batches_count_once(svc: Auth) -> None:
    lot = Lot(svc)
    batch = [gate(1, 1, 0), gate(2, 3, 0), gate(3, 5, 1)]
    assert lot.post(lot.entrance, *batch) == {"accepted": 3, "duplicates": 0}
    assert lot.post(lot.entrance, *batch) == {"accepted": 0, "duplicates": 3}  # resent
    assert lot.cars() == 4
    # Newer readings first (seq 7, 8), then a late batch 4..6 replayed from a spool.
    lot.post(lot.entrance, gate(7, 9, 2), gate(8, 10, 2))
    assert lot.cars() == 8
    late = [gate(4, 6, 1), gate(5, 7, 2), gate(6, 8, 2)]
    assert lot.post(lot.entrance, *late) == {"accepted": 3, "duplicates": 0}
    assert lot.cars() == 8, "a late batch is stored and counted once (by the newer counters)"
    assert lot.post(lot.entrance, *late)["duplicates"] == 3
    assert lot.cars() == 8


def test_a_counter_going_backwards_starts_a_new_series(svc: Auth) -> None:
    lot = Lot(svc)
    lot.post(lot.entrance, gate(1, 3000, 0))
    lot.post(lot.exit, gate(1, 0, 2990))
    assert lot.cars() == 10
    # The entrance board swapped (or its flash wiped): its counter restarts at 2.
    lot.post(lot.entrance, gate(2, 2, 0))
    assert lot.cars() == 10, "no subtraction of thousands of cars"
    entrance = {f["device_id"]: f for f in lot.detail()["flows"]}[lot.entrance[0]]
    assert entrance["series"] == 2 and entrance["series_since"] is not None
    lot.post(lot.entrance, gate(3, 5, 0))  # three more cars in the new series
    assert lot.cars() == 13
    # `parkctl device show` says so: the admin API's device and the table the verb prints.
    response = svc.http.get(f"/admin/devices/{lot.entrance[0]}", headers=lot.admin)
    assert response.status_code == 200, response.text
    device = Device.model_validate(response.json())
    assert device.counters is not None
    assert (device.counters.gate_in, device.counters.series) == (5, 2)
    console = Console(record=True, width=200)
    console.print(device_table(device))
    shown = console.export_text()
    assert "in 5, out 0 (seq 3)" in shown and "counters went backwards" in shown, shown


def test_counters_wrap_at_2_32(svc: Auth) -> None:
    lot = Lot(svc)
    top = 2**32 - 1
    lot.post(lot.entrance, gate(1, top - 1, 0))
    lot.post(lot.exit, gate(1, 0, top - 5))
    lot.recount(4)
    lot.post(lot.entrance, gate(2, 2, 0))  # top - 1 -> 2: four cars in across the wrap
    lot.post(lot.exit, gate(2, 0, top))  # five out
    assert lot.cars() == 3
    entrance = {f["device_id"]: f for f in lot.detail()["flows"]}[lot.entrance[0]]
    assert entrance["in"] == 4 and entrance["series"] == 1


def test_a_stray_seq_never_pins_a_gate_board(svc: Auth) -> None:
    """One stray seq less than 10**6 ahead (a flipped bit in a spooled seq) is stored but held
    as suspect: the board's real readings after it still move the lot."""
    lot = Lot(svc)
    lot.post(lot.entrance, gate(10, 5, 0))
    assert lot.post(lot.entrance, gate(1_000_009, 6, 0))["accepted"] == 1
    assert lot.cars() == 5, "the stray is not current"
    lot.post(lot.entrance, gate(11, 7, 0))
    lot.post(lot.entrance, gate(12, 9, 0))
    assert lot.cars() == 9
    entrance = {f["device_id"]: f for f in lot.detail()["flows"]}[lot.entrance[0]]
    assert entrance["series"] == 1 and entrance["faults"] == 0


def test_a_counter_step_beyond_the_lanes_rate_is_a_fault(svc: Auth) -> None:
    """A gate's counters cannot add more cars than its lanes pass (GATE_RATE a second since the
    previous post, GATE_ALLOWANCE more, credit carried for at most GATE_CARRY_S): 0 -> 2**31-1
    -> 2**32-2 adds nothing, starts a new series and is reported as a fault on the board."""
    lot = Lot(svc)
    lot.post(lot.entrance, gate(1, 0, 0))
    lot.post(lot.entrance, gate(2, 2**31 - 1, 0))
    lot.post(lot.entrance, gate(3, 2**32 - 2, 0))
    assert lot.cars() == 0
    entrance = {f["device_id"]: f for f in lot.detail()["flows"]}[lot.entrance[0]]
    assert entrance["faults"] == 2 and entrance["series"] == 3 and entrance["fault_at"]
    lot.post(lot.entrance, gate(4, 1, 0))  # wraps: 3 more cars in, honest
    assert lot.cars() == 3
    # What the credit allows is counted: the whole allowance at once, not one car more.
    limit = int(occupancy.GATE_CREDIT_MAX)
    lot.post(lot.exit, gate(1, 0, limit))
    assert lot.cars() == 0 and lot.detail()["counted"] == 3 - limit
    lot.post(lot.exit, gate(2, 0, limit + occupancy.GATE_ALLOWANCE + 5))  # the credit is spent
    exit_flow = {f["device_id"]: f for f in lot.detail()["flows"]}[lot.exit[0]]
    assert exit_flow["faults"] == 1 and exit_flow["out"] == limit
    # The board says so: the admin API's device (and parkctl's table from it).
    response = svc.http.get(f"/admin/devices/{lot.exit[0]}", headers=lot.admin)
    assert response.status_code == 200, response.text
    counters = Device.model_validate(response.json()).counters
    assert counters is not None and counters.faults == 1 and counters.fault_at is not None
    with svc.ctx.engine.connect() as conn:  # and the dashboard's board
        (board,) = views.boards(conn, 3600, client_id=lot.exit[0])
    assert board.faults == 1 and "1 counter faults" in board.problems


def test_zone_and_gate_boards_in_one_lot_and_the_flags(svc: Auth) -> None:
    lot = Lot(svc)
    zone = lot._board("north", "level-2")
    lot.post(zone, {"seq": 1, "cars": 20})
    lot.post(lot.entrance, gate(1, 3, 0))
    assert lot.cars() == 23
    lot.recount(2)  # zone boards count absolutely: the baseline covers the gates' share
    lot.post(lot.exit, gate(1, 0, 30))
    detail = lot.detail()
    assert detail["counted"] == 2 + 20 - 30 and detail["cars"] == 0 and detail["drift"]
    response = svc.http.post(
        "/admin/lots", json={"name": "north", "capacity": 10}, headers=lot.admin
    )
    assert response.status_code == 201, response.text
    lot.recount(15)
    detail = lot.detail()
    assert detail["cars"] == 35 and detail["over_capacity"] and not detail["drift"]
    assert detail["free"] == 0


def test_recount_refuses_bad_input_and_changes_nothing(svc: Auth) -> None:
    lot = Lot(svc)
    lot.post(lot.entrance, gate(1, 3, 0))
    http = svc.http
    for body in ({"cars": -1}, {"cars": "x"}, {}, {"cars": 1, "extra": 1}, {"cars": 10**9}):
        response = http.post("/admin/lots/north/recount", json=body, headers=lot.admin)
        assert response.status_code == 422, (body, response.text)
    unknown = http.post("/admin/lots/nowhere/recount", json={"cars": 1}, headers=lot.admin)
    assert unknown.status_code == 404, unknown.text
    bad_name = http.post("/admin/lots/no%2Fslash/recount", json={"cars": 1}, headers=lot.admin)
    assert bad_name.status_code in (404, 422), bad_name.text
    no_auth = http.post("/admin/lots/north/recount", json={"cars": 1}, headers=lot.read)
    assert no_auth.status_code in (401, 403), no_auth.text
    assert lot.cars() == 3 and lot.detail()["baseline"] == 0


def test_gate_readings_are_validated() -> None:
    ok = parse_counts(b'{"readings":[{"seq":1,"in":4294967295,"out":0,"ts":null}]}')
    assert ok.gates == [(1, 2**32 - 1, 0, None)] and ok.readings == []
    cases = {
        b'{"readings":[{"seq":1,"in":4294967296,"out":0}]}': ("in", "int_type"),
        b'{"readings":[{"seq":1,"in":1}]}': ("out", "missing"),
        b'{"readings":[{"seq":1,"in":1,"out":-1}]}': ("out", "int_type"),
        b'{"readings":[{"seq":1,"in":1,"out":true}]}': ("out", "int_type"),
        b'{"readings":[{"seq":1,"in":1,"out":0,"cars":3}]}': (None, "value_error"),
        b'{"readings":[{"seq":1,"in":1,"out":0,"x":3}]}': ("x", "extra_forbidden"),
    }
    for body, (field, kind) in cases.items():
        try:
            parse_counts(body)
        except InvalidBody as error:
            (detail,) = error.detail()
            assert detail["type"] == kind, (body, detail)
            if field is not None:
                assert detail["loc"][-1] == field, (body, detail)
        else:
            raise AssertionError(f"accepted {body!r}")


def test_history_follows_the_same_rule(svc: Auth) -> None:
    lot = Lot(svc)
    lot.post(lot.entrance, *[gate(k, k, 0) for k in range(1, 11)])
    lot.post(lot.exit, *[gate(k, 0, k) for k in range(1, 5)])
    lot.recount(1)
    response = svc.http.get(
        "/v1/lots/north/history",
        params={"from": str(T0 - 600), "to": str(T0 + 10**9), "step": "31536000"},
        headers=lot.read,
    )
    assert response.status_code == 200, response.text
    values = [v for v in response.json()["cars"] if v is not None]
    assert values and values[-1] == 1, response.json()


def test_the_document_describes_both_kinds_with_the_validators_limits() -> None:
    from provisioning.service.ingest import schemas

    zone, gate_item = schemas.COUNTS_BODY_SCHEMA["properties"]["readings"]["items"]["oneOf"]
    assert set(zone["properties"]) == schemas._READING_KEYS
    assert set(gate_item["properties"]) == schemas._GATE_KEYS
    assert gate_item["required"] == ["seq", "in", "out"] and not gate_item["additionalProperties"]
    for name in ("in", "out"):
        assert gate_item["properties"][name] == {
            "type": "integer", "minimum": 0, "maximum": schemas.MAX_COUNTER
        }  # fmt: skip
    # What the document allows at the edges, the validator takes; one past, it refuses.
    top = schemas.MAX_COUNTER
    assert parse_counts(b'{"readings":[{"seq":0,"in":%d,"out":0}]}' % top).gates
    try:
        parse_counts(b'{"readings":[{"seq":0,"in":0,"out":%d}]}' % (top + 1))
    except InvalidBody:
        pass
    else:
        raise AssertionError("a counter past 2**32 - 1 was accepted")
